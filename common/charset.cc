#include "common/charset.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcsequen.h"

#include <iconv.h>

#include <vector>

#include "common/dicom.h"
#include "common/text.h"

namespace teleread {
namespace {

std::string Trimmed(std::string_view s) {
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \0") - b + 1));
}

// What a code element (G0 or G1) currently holds.
enum class Set { kAscii, kRoman, kJis0208, kJis0212, kKatakana, kKsx1001, kGb2312, kSingleByte, kNone };

struct State {
  Set g0 = Set::kAscii, g1 = Set::kNone;
  std::string g1_iconv;  // for kSingleByte: the ISO 8859 part in G1
};

// ISO 8859 sets by the final byte of "ESC - F" and by their DICOM term.
struct Latin {
  char final_byte;
  const char* term;
  const char* iconv;
};
constexpr Latin kLatin[] = {{'A', "ISO 2022 IR 100", "ISO-8859-1"}, {'B', "ISO 2022 IR 101", "ISO-8859-2"},
                            {'C', "ISO 2022 IR 109", "ISO-8859-3"}, {'D', "ISO 2022 IR 110", "ISO-8859-4"},
                            {'L', "ISO 2022 IR 144", "ISO-8859-5"}, {'G', "ISO 2022 IR 127", "ISO-8859-6"},
                            {'F', "ISO 2022 IR 126", "ISO-8859-7"}, {'H', "ISO 2022 IR 138", "ISO-8859-8"},
                            {'M', "ISO 2022 IR 148", "ISO-8859-9"}, {'b', "ISO 2022 IR 203", "ISO-8859-15"},
                            {'T', "ISO 2022 IR 166", "TIS-620"}};

Result<State> Initial(std::string_view first_term) {
  State s;
  const std::string term = Trimmed(first_term);
  if (term.empty() || term == "ISO 2022 IR 6") return s;
  if (term == "ISO 2022 IR 13") {
    s.g0 = Set::kRoman;
    s.g1 = Set::kKatakana;
    return s;
  }
  for (const Latin& l : kLatin) {
    if (term == l.term) {
      s.g1 = Set::kSingleByte;
      s.g1_iconv = l.iconv;
      return s;
    }
  }
  // Multi-byte sets are not allowed as the first (default) term.
  return Status::InvalidArgument("'" + term + "' cannot be the first term of Specific Character Set");
}

Result<std::string> Iconv(const char* from, const std::string& bytes) {
  iconv_t cd = iconv_open("UTF-8", from);
  if (cd == reinterpret_cast<iconv_t>(-1)) return Status::InvalidArgument(std::string("no converter for ") + from);
  std::string out(bytes.size() * 4 + 8, '\0');
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size(), out_left = out.size();
  char* dst = out.data();
  const size_t rc = iconv(cd, &in, &in_left, &dst, &out_left);
  iconv_close(cd);
  if (rc == static_cast<size_t>(-1)) return Status::InvalidArgument(std::string("bytes not valid in ") + from);
  out.resize(out.size() - out_left);
  return out;
}

}  // namespace

bool UsesIso2022(std::string_view cs) { return cs.find("ISO 2022") != std::string_view::npos; }

Result<std::string> DecodeIso2022(std::string_view cs, std::string_view raw, std::string_view delimiters) {
  const size_t bs = cs.find('\\');
  Result<State> initial = Initial(cs.substr(0, bs));
  if (!initial.ok()) return initial.status();
  State st = initial.value();
  std::string out, pending;
  std::string pending_from;  // the iconv name `pending` is in; "" for ASCII
  auto flush = [&]() -> Status {
    if (pending.empty()) return Status::Ok();
    if (pending_from.empty()) {
      out += pending;
    } else {
      Result<std::string> u = Iconv(pending_from.c_str(), pending);
      if (!u.ok()) return u.status();
      out += u.value();
    }
    pending.clear();
    return Status::Ok();
  };
  auto add = [&](const std::string& from, std::string bytes) -> Status {
    if (from != pending_from) {
      if (Status s = flush(); !s.ok()) return s;
      pending_from = from;
    }
    pending += bytes;
    return Status::Ok();
  };
  for (size_t i = 0; i < raw.size();) {
    const auto b = static_cast<unsigned char>(raw[i]);
    if (b == 0x1B) {
      const std::string_view esc = raw.substr(i + 1, 3);
      size_t len = 0;
      if (esc.substr(0, 2) == "(B")
        st.g0 = Set::kAscii, len = 2;
      else if (esc.substr(0, 2) == "(J")
        st.g0 = Set::kRoman, len = 2;
      else if (esc.substr(0, 2) == "$B" || esc.substr(0, 2) == "$@")
        st.g0 = Set::kJis0208, len = 2;
      else if (esc.substr(0, 3) == "$(D")
        st.g0 = Set::kJis0212, len = 3;
      else if (esc.substr(0, 2) == ")I")
        st.g1 = Set::kKatakana, len = 2;
      else if (esc.substr(0, 3) == "$)C")
        st.g1 = Set::kKsx1001, len = 3;
      else if (esc.substr(0, 3) == "$)A")
        st.g1 = Set::kGb2312, len = 3;
      else if (esc.size() >= 2 && esc[0] == '-') {
        for (const Latin& l : kLatin) {
          if (l.final_byte == esc[1]) st.g1 = Set::kSingleByte, st.g1_iconv = l.iconv, len = 2;
        }
      }
      if (len == 0)
        return Status::InvalidArgument("unsupported ISO 2022 escape sequence in '" + Trimmed(cs) + "' text");
      i += 1 + len;
      continue;
    }
    if (b < 0x80) {
      if (st.g0 == Set::kJis0208 || st.g0 == Set::kJis0212) {
        if (b < 0x21 || i + 1 >= raw.size()) {  // controls (CR, LF) stay single bytes
          if (Status s = add("", std::string(1, static_cast<char>(b))); !s.ok()) return s;
          ++i;
          continue;
        }
        std::string euc;
        if (st.g0 == Set::kJis0212) euc += '\x8F';
        euc += static_cast<char>(b | 0x80);
        euc += static_cast<char>(static_cast<unsigned char>(raw[i + 1]) | 0x80);
        if (Status s = add("EUC-JP", euc); !s.ok()) return s;
        i += 2;
        continue;
      }
      if (Status s = add("", std::string(1, static_cast<char>(b))); !s.ok()) return s;
      if (delimiters.find(static_cast<char>(b)) != std::string_view::npos) st = initial.value();
      ++i;
      continue;
    }
    switch (st.g1) {
      case Set::kKatakana: {
        // JIS X 0201 katakana 0xA1-0xDF are the half-width forms U+FF61-U+FF9F.
        if (b < 0xA1 || b > 0xDF) return Status::InvalidArgument("byte not valid in JIS X 0201 katakana");
        if (Status s = add("EUC-JP", std::string("\x8E") + static_cast<char>(b)); !s.ok()) return s;
        ++i;
        break;
      }
      case Set::kKsx1001:
      case Set::kGb2312: {
        if (i + 1 >= raw.size()) return Status::InvalidArgument("a two-byte character is cut short");
        if (Status s = add(st.g1 == Set::kKsx1001 ? "EUC-KR" : "GB2312", std::string(raw.substr(i, 2))); !s.ok())
          return s;
        i += 2;
        break;
      }
      case Set::kSingleByte: {
        if (Status s = add(st.g1_iconv, std::string(1, static_cast<char>(b))); !s.ok()) return s;
        ++i;
        break;
      }
      default:
        return Status::InvalidArgument("a byte above 0x7F with no character set in G1");
    }
  }
  if (Status s = flush(); !s.ok()) return s;
  return out;
}

namespace {

Status ConvertItem(DcmItem& item, const std::string& inherited) {
  OFString own;
  const std::string cs = item.findAndGetOFStringArray(DCM_SpecificCharacterSet, own).good() ? own.c_str() : inherited;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e == nullptr) continue;
    const DcmEVR vr = e->ident();
    if (vr == EVR_SQ) {
      auto* seq = static_cast<DcmSequenceOfItems*>(e);
      for (unsigned long k = 0; k < seq->card(); ++k) {
        if (Status s = ConvertItem(*seq->getItem(k), cs); !s.ok()) return s;
      }
      continue;
    }
    const char* delimiters = nullptr;
    if (vr == EVR_PN)
      delimiters = "\\^=";
    else if (vr == EVR_LO || vr == EVR_SH || vr == EVR_UC)
      delimiters = "\\";
    else if (vr == EVR_ST || vr == EVR_LT || vr == EVR_UT)
      delimiters = "\r\n\t\f";
    if (delimiters == nullptr || e->getLength() == 0) continue;
    char* raw = nullptr;
    if (e->getString(raw).bad() || raw == nullptr) continue;
    Result<std::string> utf8 = DecodeToUtf8(cs, std::string_view(raw, e->getLength()), delimiters);
    if (!utf8.ok()) return utf8.status();
    if (e->putString(utf8->c_str(), static_cast<Uint32>(utf8->size())).bad()) {
      return Status::InvalidArgument("cannot store the converted text");
    }
  }
  if (item.tagExists(DCM_SpecificCharacterSet)) (void)item.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  return Status::Ok();
}

}  // namespace

Status ConvertDatasetToUtf8(DcmDataset& item) {
  OFString cs;
  (void)item.findAndGetOFStringArray(DCM_SpecificCharacterSet, cs);
  if (!UsesIso2022(cs.c_str())) {
    if (OFCondition c = item.convertToUTF8(); c.bad()) return Status::InvalidArgument(c.text());
    return Status::Ok();
  }
  if (Status s = ConvertItem(item, cs.c_str()); !s.ok()) return s;
  return Status::Ok();
}

}  // namespace teleread
