#pragma once
// Images drawn on a terminal: kitty graphics, sixel or iTerm2 inline images through libchafa
// where the terminal has them (a maintained library that knows these protocols and their quirks,
// Debian libchafa0, so we do not hand-write encoders), else 24-bit colour half blocks.
//
// Threads: a TerminalPainter is used by one thread (the reader's UI thread).
#include <memory>
#include <string>

#include "viewer/render.h"

namespace teleread::viewer {

enum class GraphicsProtocol { kSymbols, kSixel, kKitty, kIterm2 };

// From $TELEREAD_GRAPHICS (symbols, sixel, kitty, iterm2) or the environment the terminal sets
// (KITTY_WINDOW_ID, TERM_PROGRAM=iTerm.app or WezTerm, TERM containing "kitty" or "sixel"...).
// Inside tmux and screen, symbols: they do not pass graphics through by default.
GraphicsProtocol DetectGraphicsProtocol();
const char* ProtocolName(GraphicsProtocol protocol);

class TerminalPainter {
 public:
  explicit TerminalPainter(GraphicsProtocol protocol);
  ~TerminalPainter();
  TerminalPainter(const TerminalPainter&) = delete;
  TerminalPainter& operator=(const TerminalPainter&) = delete;

  // Escape sequences that draw `image` scaled to fit `columns` x `rows` character cells (cell
  // size in pixels from the terminal, for the pixel protocols), starting at the cursor. Half-block
  // output is one line per row with cursor movement to `left` (1-based column) after each.
  std::string Encode(const RgbImage& image, int columns, int rows, int left, int cell_width, int cell_height);

  GraphicsProtocol protocol() const { return protocol_; }

 private:
  struct Impl;
  GraphicsProtocol protocol_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teleread::viewer
