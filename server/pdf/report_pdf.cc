#include "server/pdf/report_pdf.h"

#include <cairo-pdf.h>
#include <cairo.h>
#include <pango/pangocairo.h>

#include <string>
#include <vector>

namespace teleread {
namespace {

constexpr double kPageWidth = 595.28;  // A4 in points
constexpr double kPageHeight = 841.89;
constexpr double kMargin = 56.69;  // 20 mm
constexpr double kFooter = 28.0;   // room kept at the bottom of each page for its footer
constexpr double kBody = 10.5, kSmall = 8.0, kHeading = 11.0, kTitle = 16.0;

struct Colour {
  double r = 0, g = 0, b = 0;
};
constexpr Colour kBlack{0, 0, 0}, kGrey{0.35, 0.35, 0.35}, kRed{0.78, 0.05, 0.05};

cairo_status_t Append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

bool HasNonAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return true;
  }
  return false;
}

// "Wang^Li=王^丽" -> "Wang Li (王丽)": components joined by a space, except in a CJK group,
// where family and given name are written together.
std::string PersonName(const std::string& pn) {
  std::vector<std::string> groups;
  size_t start = 0;
  for (;;) {
    const size_t end = pn.find('=', start);
    std::string group = pn.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string shown;
    size_t from = 0;
    for (;;) {
      const size_t caret = group.find('^', from);
      std::string part = group.substr(from, caret == std::string::npos ? std::string::npos : caret - from);
      if (!part.empty()) shown += (shown.empty() || HasNonAscii(part) ? "" : " ") + part;
      if (caret == std::string::npos) break;
      from = caret + 1;
    }
    if (!shown.empty()) groups.push_back(shown);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (groups.empty()) return "-";
  std::string out = groups[0];
  for (size_t i = 1; i < groups.size(); ++i) out += (i == 1 ? " (" : ", ") + groups[i];
  return groups.size() > 1 ? out + ")" : out;
}

std::string Date(const std::string& da) {
  if (da.size() < 8) return da.empty() ? "-" : da;
  return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
}

// DICOM DT "YYYYMMDDHHMMSS.FFFFFF+ZZZZ" -> "YYYY-MM-DD HH:MM:SS +ZZZZ".
std::string DateTime(const std::string& dt) {
  if (dt.size() < 14) return dt.empty() ? "-" : dt;
  std::string out = Date(dt.substr(0, 8)) + " " + dt.substr(8, 2) + ":" + dt.substr(10, 2) + ":" + dt.substr(12, 2);
  const size_t zone = dt.find_first_of("+-", 14);
  if (zone != std::string::npos) out += " " + dt.substr(zone);
  return out;
}

std::string Or(const std::string& s) { return s.empty() ? "-" : s; }

// Lays paragraphs down the page with one Pango layout, line by line, so that a paragraph longer
// than what is left of the page continues on the next one.
class PageWriter {
 public:
  explicit PageWriter(std::string* out)
      : surface_(cairo_pdf_surface_create_for_stream(Append, out, kPageWidth, kPageHeight)),
        cr_(cairo_create(surface_)),
        layout_(pango_cairo_create_layout(cr_)) {}
  ~PageWriter() {
    g_object_unref(layout_);
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
  }
  PageWriter(const PageWriter&) = delete;
  PageWriter& operator=(const PageWriter&) = delete;

  void SetFooter(std::string footer) { footer_ = std::move(footer); }
  void SetMetadata(cairo_pdf_metadata_t key, const std::string& value) {
    cairo_pdf_surface_set_metadata(surface_, key, value.c_str());
  }

  void Paragraph(const std::string& text, double size, Colour colour = kBlack, double indent = 0) {
    Prepare(text, size, kPageWidth - 2 * kMargin - indent);
    cairo_set_source_rgb(cr_, colour.r, colour.g, colour.b);
    PangoLayoutIter* it = pango_layout_get_iter(layout_);
    double offset = 0;  // the layout's y at the top of this page
    double bottom = 0;
    do {
      PangoRectangle line;
      pango_layout_iter_get_line_extents(it, nullptr, &line);
      const double top = line.y / double{PANGO_SCALE}, height = line.height / double{PANGO_SCALE};
      // Never from the footer itself: a wrapping footer would start a page that draws a footer.
      if (!in_footer_ && y_ + top + height - offset > kPageHeight - kMargin - kFooter && top > offset) {
        NewPage();
        offset = top;
      }
      const double baseline = pango_layout_iter_get_baseline(it) / double{PANGO_SCALE};
      cairo_move_to(cr_, kMargin + indent + line.x / double{PANGO_SCALE}, y_ + baseline - offset);
      pango_cairo_show_layout_line(cr_, pango_layout_iter_get_line_readonly(it));
      bottom = top + height;
    } while (pango_layout_iter_next_line(it));
    pango_layout_iter_free(it);
    y_ += bottom - offset;
  }

  // A label and its value on one line, the value wrapping under itself.
  void Field(const std::string& label, const std::string& value, double label_width = 92) {
    Need(2 * kBody);  // the label and the value's first line on one page
    const double y = y_;
    Paragraph(label, kBody, kGrey);
    y_ = y;
    Paragraph(value, kBody, kBlack, label_width);
  }

  void Gap(double points) { y_ += points; }

  // Keeps the next `points` together on one page.
  void Need(double points) {
    if (y_ + points > kPageHeight - kMargin - kFooter) NewPage();
  }

  void Rule(Colour colour = kGrey, double width = 0.6) {
    cairo_set_source_rgb(cr_, colour.r, colour.g, colour.b);
    cairo_set_line_width(cr_, width);
    cairo_move_to(cr_, kMargin, y_);
    cairo_line_to(cr_, kPageWidth - kMargin, y_);
    cairo_stroke(cr_);
  }

  // A framed, tinted band across the text width holding one line.
  void Banner(const std::string& text, Colour colour) {
    Prepare(text, kHeading, kPageWidth - 2 * kMargin - 16);
    int w = 0, h = 0;
    pango_layout_get_pixel_size(layout_, &w, &h);
    Need(h + 12);
    cairo_set_source_rgb(cr_, 1.0, 0.93, 0.93);
    cairo_rectangle(cr_, kMargin, y_, kPageWidth - 2 * kMargin, h + 10);
    cairo_fill_preserve(cr_);
    cairo_set_source_rgb(cr_, colour.r, colour.g, colour.b);
    cairo_set_line_width(cr_, 1.2);
    cairo_stroke(cr_);
    cairo_move_to(cr_, kMargin + 8, y_ + 5);
    pango_cairo_show_layout(cr_, layout_);
    y_ += h + 10;
  }

  Status Finish() {
    Footer();
    cairo_surface_finish(surface_);
    const cairo_status_t s = cairo_surface_status(surface_);
    if (s != CAIRO_STATUS_SUCCESS) return Status::IOError(std::string("cairo: ") + cairo_status_to_string(s));
    return Status::Ok();
  }

  int unknown_glyphs() const { return unknown_glyphs_; }

 private:
  void Prepare(const std::string& text, double size, double width) {
    PangoFontDescription* font = pango_font_description_new();
    pango_font_description_set_family(font, kReportFontFamily);
    pango_font_description_set_absolute_size(font, size * PANGO_SCALE);
    // One weight: the font has no bold face (a synthetic one blurs CJK); headings stand out by
    // size and rules. A TrueType font: Cairo 1.16 keeps Noto CJK's CFF subroutines whole in a
    // subset (914 KB a copy, 35 ms), the glyf subset is 27 KB (4 ms).
    pango_font_description_set_weight(font, PANGO_WEIGHT_NORMAL);
    pango_layout_set_font_description(layout_, font);
    pango_font_description_free(font);
    pango_layout_set_width(layout_, static_cast<int>(width * PANGO_SCALE));
    // Chinese has no spaces: break between words where there are any, else between characters.
    pango_layout_set_wrap(layout_, PANGO_WRAP_WORD_CHAR);
    // DICOM text may hold form feeds and other C0 controls (pasted from word processors); Pango
    // would count each as a missing glyph.
    std::string clean = text;
    for (char& c : clean) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') c = ' ';
    }
    pango_layout_set_text(layout_, clean.data(), static_cast<int>(clean.size()));
    unknown_glyphs_ += pango_layout_get_unknown_glyphs_count(layout_);
  }

  void Footer() {
    const double y = y_;
    y_ = kPageHeight - kMargin - kFooter + 10;
    Rule(kGrey, 0.4);
    y_ += 3;
    in_footer_ = true;
    Paragraph(footer_ + "  ·  page " + std::to_string(page_), kSmall, kGrey);
    in_footer_ = false;
    y_ = y;
  }

  void NewPage() {
    Footer();
    cairo_show_page(cr_);
    ++page_;
    y_ = kMargin;
  }

  cairo_surface_t* surface_;
  cairo_t* cr_;
  PangoLayout* layout_;
  double y_ = kMargin;
  int page_ = 1;
  int unknown_glyphs_ = 0;
  bool in_footer_ = false;
  std::string footer_;
};

}  // namespace

Result<std::string> TypesetReportPdf(const ReportPdfText& t) {
  std::string pdf;
  {
    PageWriter page(&pdf);
    page.SetMetadata(CAIRO_PDF_METADATA_TITLE, t.document_title);
    page.SetMetadata(CAIRO_PDF_METADATA_CREATOR, "TeleRead");
    page.SetMetadata(CAIRO_PDF_METADATA_AUTHOR, t.centre_name);
    page.SetFooter("Copy of signed report " + t.report_sop_instance_uid);

    page.Paragraph(Or(t.centre_name), kHeading);
    page.Paragraph(t.document_title, kTitle);
    page.Gap(6);
    page.Rule(kBlack, 1.0);
    page.Gap(8);

    page.Field("患者 Patient", PersonName(t.patient_name));
    page.Field("ID", Or(t.patient_id));
    page.Field("性别 Sex", Or(t.patient_sex));
    page.Field("出生 Born", Date(t.patient_birth_date));
    page.Gap(6);
    page.Field("检查 Study", Date(t.study_date) + "   " + Or(t.modality) + "   " + Or(t.study_description));
    page.Field("Accession", Or(t.accession_number));
    page.Gap(8);
    page.Rule();
    page.Gap(10);

    if (t.critical) {
      page.Banner("危急值 CRITICAL RESULT: communicated to the referring hospital, to be acknowledged", kRed);
      page.Gap(10);
    }
    auto section = [&page](const std::string& heading, const std::string& body) {
      page.Need(40);  // a heading is not left alone at the foot of a page
      page.Paragraph(heading, kHeading);
      page.Gap(3);
      page.Paragraph(body, kBody);
      page.Gap(12);
    };
    section("检查所见 Findings", t.findings);
    section("诊断意见 Impression", t.impression);
    if (!t.recommendation.empty()) section("建议 Recommendation", t.recommendation);

    page.Need(120);
    page.Rule();
    page.Gap(8);
    page.Field("报告医师 Signed by", PersonName(t.signer_name) + (t.signer_id.empty() ? "" : " (" + t.signer_id + ")"),
               110);
    page.Field("签署时间 Signed at", DateTime(t.signed_at), 110);
    page.Field("Certificate SHA-256", Or(t.certificate_sha256), 110);
    if (!t.amends_sop_instance_uid.empty()) page.Field("Amends report", t.amends_sop_instance_uid, 110);
    page.Gap(8);
    page.Paragraph("本文件为副本。具有法律效力的原件是经数字签名的 DICOM 结构化报告 (SR) " + t.report_sop_instance_uid +
                       "。 This PDF is a copy for systems that cannot show a DICOM SR: the digitally signed DICOM SR "
                       "report is the authoritative copy.",
                   kSmall + 0.5, kGrey);
    // The signed SR must not be refused for its copy: a character no installed font has is shown
    // as a box, and the copy says so.
    if (page.unknown_glyphs() > 0) {
      page.Gap(6);
      page.Paragraph(std::to_string(page.unknown_glyphs()) +
                         " character(s) of this report cannot be shown in this copy (no installed font has them): "
                         "read the signed SR.",
                     kBody, kRed);
    }
    if (Status s = page.Finish(); !s.ok()) return s;
  }
  return pdf;
}

Status CheckReportFont() {
  // A map of its own: the main thread's default map would live, with its caches, until exit.
  PangoFontMap* map = pango_cairo_font_map_new();
  PangoContext* context = pango_font_map_create_context(map);
  PangoFontDescription* wanted = pango_font_description_from_string(kReportFontFamily);
  PangoFont* font = pango_font_map_load_font(map, context, wanted);
  std::string family;
  if (font) {
    PangoFontDescription* got = pango_font_describe(font);
    if (const char* f = pango_font_description_get_family(got)) family = f;
    pango_font_description_free(got);
    g_object_unref(font);
  }
  pango_font_description_free(wanted);
  g_object_unref(context);
  g_object_unref(map);
  if (family == kReportFontFamily) return Status::Ok();
  return Status::NotFound(std::string("the report font '") + kReportFontFamily + "' is not installed (got '" + family +
                          "'): install fonts-wqy-microhei, or PDF copies of reports cannot be made");
}

}  // namespace teleread
