#pragma once
// `teleread read STUDY`: the interactive full-screen reader. The study's images (and ECGs) in a
// terminal, drawn with the best protocol it has (term_image.h), sized to the window and redrawn
// when it changes; the patient named on the top line at all times. Keys are listed on the bottom
// line. Instances are fetched in the background, what is on screen first; cached ones show at
// once. With $TELEREAD_READER_TRACE set, the time of the first image and of each key's redraw
// are appended to that file (tests/bench/reader.sh reads them).
#include "viewer/cli.h"

namespace teleread::viewer {

void AddReaderCommand(CLI::App& app, Session& session);

}  // namespace teleread::viewer
