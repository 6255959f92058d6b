#include "viewer/terminal.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace teleread::viewer {
namespace {

std::atomic<bool> g_resized{false};

void OnWinch(int) { g_resized = true; }

}  // namespace

struct Terminal::Saved {
  termios mode{};
  struct sigaction winch {};
};

Terminal::Terminal() {
  if (::isatty(STDIN_FILENO) != 1 || ::isatty(STDOUT_FILENO) != 1) return;
  saved_ = new Saved;
  if (tcgetattr(STDIN_FILENO, &saved_->mode) != 0) return;
  struct sigaction sa {};
  sa.sa_handler = OnWinch;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGWINCH, &sa, &saved_->winch);
  ok_ = true;
  Resume();
}

Terminal::~Terminal() {
  if (ok_) {
    Suspend();
    sigaction(SIGWINCH, &saved_->winch, nullptr);
  }
  delete saved_;
}

void Terminal::Resume() {
  if (!ok_ || raw_) return;
  termios raw = saved_->mode;
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN);
  raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
  Write("\033[?1049h\033[?25l\033[2J");  // alternate screen, cursor hidden, cleared
  raw_ = true;
  g_resized = true;
}

void Terminal::Suspend() {
  if (!ok_ || !raw_) return;
  Write("\033[0m\033[2J\033[?25h\033[?1049l");
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_->mode);
  raw_ = false;
}

TerminalSize Terminal::Size() const {
  TerminalSize s;
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
    s.columns = ws.ws_col;
    s.rows = ws.ws_row;
    if (ws.ws_xpixel > 0 && ws.ws_ypixel > 0) {
      s.cell_width = ws.ws_xpixel / ws.ws_col;
      s.cell_height = ws.ws_ypixel / ws.ws_row;
    }
  }
  return s;
}

bool Terminal::Resized() { return g_resized.exchange(false); }

void Terminal::Write(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int Terminal::ReadKey(int timeout_ms) {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return kNone;
  unsigned char c = 0;
  if (::read(STDIN_FILENO, &c, 1) != 1) return kNone;
  if (c == '\r' || c == '\n') return kEnter;
  if (c == 127 || c == 8) return kBackspace;
  if (c != 0x1B) return c;
  // An escape sequence arrives at once; a lone ESC has nothing after it.
  std::string seq;
  for (;;) {
    pollfd q{STDIN_FILENO, POLLIN, 0};
    if (::poll(&q, 1, 30) <= 0) break;
    unsigned char d = 0;
    if (::read(STDIN_FILENO, &d, 1) != 1) break;
    seq += static_cast<char>(d);
    if (seq.size() >= 2 && ((d >= 'A' && d <= 'Z') || d == '~')) break;
    if (seq.size() > 8) break;
  }
  if (seq.empty()) return kEscape;
  if (seq == "[A" || seq == "OA") return kUp;
  if (seq == "[B" || seq == "OB") return kDown;
  if (seq == "[C" || seq == "OC") return kRight;
  if (seq == "[D" || seq == "OD") return kLeft;
  if (seq == "[5~") return kPageUp;
  if (seq == "[6~") return kPageDown;
  if (seq == "[H" || seq == "[1~" || seq == "OH") return kHome;
  if (seq == "[F" || seq == "[4~" || seq == "OF") return kEnd;
  if (seq == "[1;2A") return kShiftUp;
  if (seq == "[1;2B") return kShiftDown;
  if (seq == "[1;2C") return kShiftRight;
  if (seq == "[1;2D") return kShiftLeft;
  return kNone;
}

}  // namespace teleread::viewer
