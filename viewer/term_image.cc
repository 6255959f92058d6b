#include "viewer/term_image.h"

#include <chafa.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace teleread::viewer {

GraphicsProtocol DetectGraphicsProtocol() {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  const std::string forced = env("TELEREAD_GRAPHICS");
  if (forced == "sixel") return GraphicsProtocol::kSixel;
  if (forced == "kitty") return GraphicsProtocol::kKitty;
  if (forced == "iterm2") return GraphicsProtocol::kIterm2;
  if (forced == "symbols") return GraphicsProtocol::kSymbols;
  if (!env("TMUX").empty() || env("TERM").rfind("screen", 0) == 0) return GraphicsProtocol::kSymbols;
  if (!env("KITTY_WINDOW_ID").empty() || env("TERM").find("kitty") != std::string::npos)
    return GraphicsProtocol::kKitty;
  const std::string program = env("TERM_PROGRAM");
  if (program == "iTerm.app" || program == "WezTerm") return GraphicsProtocol::kIterm2;
  if (env("TERM").find("sixel") != std::string::npos || program == "mlterm" || !env("MLTERM").empty()) {
    return GraphicsProtocol::kSixel;
  }
  return GraphicsProtocol::kSymbols;
}

const char* ProtocolName(GraphicsProtocol p) {
  switch (p) {
    case GraphicsProtocol::kSixel:
      return "sixel";
    case GraphicsProtocol::kKitty:
      return "kitty";
    case GraphicsProtocol::kIterm2:
      return "iterm2";
    default:
      return "symbols";
  }
}

struct TerminalPainter::Impl {
  ChafaTermInfo* term = nullptr;
  ~Impl() {
    if (term) chafa_term_info_unref(term);
  }
};

TerminalPainter::TerminalPainter(GraphicsProtocol protocol) : protocol_(protocol), impl_(std::make_unique<Impl>()) {
  // The escape sequences of an xterm-like terminal with every graphics protocol: we chose the
  // protocol ourselves, chafa only formats it.
  ChafaTermDb* db = chafa_term_db_get_default();
  const char* envp[] = {"TERM=xterm-256color", "COLORTERM=truecolor", nullptr};
  impl_->term = chafa_term_db_detect(db, const_cast<gchar**>(envp));
}

TerminalPainter::~TerminalPainter() = default;

std::string TerminalPainter::Encode(const RgbImage& image, int columns, int rows, int left, int cell_width,
                                    int cell_height) {
  if (image.width <= 0 || image.height <= 0 || columns < 1 || rows < 1) return "";
  if (protocol_ == GraphicsProtocol::kSymbols) {
    // Half blocks of our own: chafa's symbol matcher took 50-60 ms for a 200x57-cell frame here
    // (more than the 30 ms a scroll step may take), while a half block is exact for two square
    // pixels and costs a resize. chafa stays for the pixel protocols, where its encoders matter.
    const RgbImage fitted = FitWithin(image, columns, rows * 2);
    const std::string lines = HalfBlockPreview(fitted, fitted.width);
    std::string placed;
    char move[32];
    std::snprintf(move, sizeof move, "\r\033[%dC", std::max(1, left - 1));
    for (size_t i = 0; i < lines.size(); ++i) {
      placed += lines[i];
      if (lines[i] == '\n' && left > 1 && i + 1 < lines.size()) placed += move;
    }
    return placed;
  }
  ChafaCanvasConfig* config = chafa_canvas_config_new();
  // Keep the aspect ratio: cells are cell_width x cell_height pixels (about 1:2 when unknown).
  const double cw = cell_width > 0 ? cell_width : 8, ch = cell_height > 0 ? cell_height : 16;
  const double scale = std::min(columns * cw / image.width, rows * ch / image.height);
  const int width = std::clamp(static_cast<int>(image.width * scale / cw + 0.5), 1, columns);
  const int height = std::clamp(static_cast<int>(image.height * scale / ch + 0.5), 1, rows);
  chafa_canvas_config_set_geometry(config, width, height);
  chafa_canvas_config_set_cell_geometry(config, static_cast<gint>(cw), static_cast<gint>(ch));
  chafa_canvas_config_set_canvas_mode(config, CHAFA_CANVAS_MODE_TRUECOLOR);
  ChafaPixelMode mode = CHAFA_PIXEL_MODE_SYMBOLS;
  if (protocol_ == GraphicsProtocol::kSixel) mode = CHAFA_PIXEL_MODE_SIXELS;
  if (protocol_ == GraphicsProtocol::kKitty) mode = CHAFA_PIXEL_MODE_KITTY;
  if (protocol_ == GraphicsProtocol::kIterm2) mode = CHAFA_PIXEL_MODE_ITERM2;
  chafa_canvas_config_set_pixel_mode(config, mode);
  // Exact colours, no dithering: the grey levels are the diagnosis.
  chafa_canvas_config_set_dither_mode(config, CHAFA_DITHER_MODE_NONE);
  ChafaCanvas* canvas = chafa_canvas_new(config);
  chafa_canvas_draw_all_pixels(canvas, CHAFA_PIXEL_RGB8, image.rgb.data(), image.width, image.height, image.width * 3);
  GString* out = chafa_canvas_print(canvas, impl_->term);
  std::string text(out->str, out->len);
  g_string_free(out, TRUE);
  chafa_canvas_unref(canvas);
  chafa_canvas_config_unref(config);
  return text;
}

}  // namespace teleread::viewer
