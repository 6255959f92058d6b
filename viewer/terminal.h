#pragma once
// The reader's terminal: raw input without echo, the alternate screen, the window size in cells
// and pixels, SIGWINCH noticed, keys decoded from their escape sequences. The terminal is
// restored by the destructor, and while the reader hands it to another program (the editor).
//
// Threads: one UI thread owns the Terminal; the SIGWINCH handler only sets a flag.
#include <string>

namespace teleread::viewer {

enum Key : int {
  kNone = 0,
  kUp = 0x1000,
  kDown,
  kLeft,
  kRight,
  kPageUp,
  kPageDown,
  kHome,
  kEnd,
  kShiftUp,
  kShiftDown,
  kShiftLeft,
  kShiftRight,
  kEnter,
  kEscape,
  kBackspace,
};

struct TerminalSize {
  int columns = 80, rows = 24;
  int cell_width = 0, cell_height = 0;  // pixels, 0 when the terminal does not say
};

class Terminal {
 public:
  // Raw mode and the alternate screen on stdin/stdout; `ok()` is false when stdin is no terminal.
  Terminal();
  ~Terminal();
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  bool ok() const { return ok_; }
  TerminalSize Size() const;
  // Whether the window changed size since the last call.
  bool Resized();
  // The next key, waiting at most `timeout_ms` (kNone on timeout or a signal). Printable keys
  // are their ASCII code.
  int ReadKey(int timeout_ms);
  void Write(const std::string& bytes);
  // Leaves raw mode and the alternate screen (for the editor), and comes back.
  void Suspend();
  void Resume();

 private:
  bool ok_ = false;
  bool raw_ = false;
  struct Saved;
  Saved* saved_ = nullptr;
};

}  // namespace teleread::viewer
