#include "common/report.h"

#include "common/charset.h"

#include "common/dicom.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmsr/dsrdoc.h"

#include <ctime>

namespace teleread {
namespace {

// TID 2000-style content: LOINC title, DCM concept names for the sections.
const DSRCodedEntryValue kTitle("18748-4", "LN", "Diagnostic Imaging Report");
const DSRCodedEntryValue kFinding("121071", "DCM", "Finding");
const DSRCodedEntryValue kImpression("121073", "DCM", "Impression");
const DSRCodedEntryValue kRecommendation("121075", "DCM", "Recommendation");
// No standard concept says "critical result communicated"; ours, answered with SNOMED yes/no.
const DSRCodedEntryValue kCritical("CRITICAL", "99TELEREAD", "Critical finding");
const DSRCodedEntryValue kYes("373066001", "SCT", "Yes");
const DSRCodedEntryValue kNo("373067005", "SCT", "No");
constexpr char kObserverScheme[] = "99TELEREAD";

std::string Str(const OFString& s) { return std::string(s.c_str(), s.length()); }

Status Check(const OFCondition& c, const std::string& what) {
  if (c.good()) return Status::Ok();
  return Status::InvalidArgument(what + ": " + c.text());
}

// DICOM DT for now, local time (Content Date/Time are local by convention).
std::string NowDateTime() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char out[16];
  std::strftime(out, sizeof out, "%Y%m%d%H%M%S", &tm);
  return out;
}

Status AddText(DSRDocumentTree& tree, bool first, const DSRCodedEntryValue& concept, const std::string& text) {
  OFCondition c = first ? tree.addChildContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text, concept)
                        : tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text, concept);
  if (c.good()) c = tree.getCurrentContentItem().setStringValue(OFString(text.data(), text.size()));
  return Check(c, "cannot add " + Str(concept.getCodeMeaning()));
}

}  // namespace

Status WriteReport(const ReportRequest& req, const std::filesystem::path& out) {
  const ReportContent& c = req.content;
  if (c.findings.empty() || c.impression.empty())
    return Status::InvalidArgument("a report needs findings and an impression");
  if (c.radiologist_id.empty() || c.radiologist_name.empty()) {
    return Status::InvalidArgument("a report needs the radiologist's id and name");
  }
  Result<std::unique_ptr<DicomFile>> source = DicomFile::Open(req.study_instance, 64 * 1024, false);
  if (!source.ok()) {
    return Status::InvalidArgument("cannot read the study instance " + req.study_instance.string() + ": " +
                                   source.status().message());
  }
  DcmDataset& src = source.value()->dataset();
  // Patient and study attributes are copied as UTF-8 whatever the study's character set.
  if (Status st = ConvertDatasetToUtf8(src); !st.ok()) {
    return Status::InvalidArgument("cannot convert the study's text to UTF-8: " + st.message());
  }

  DSRDocument doc(DSRTypes::DT_BasicTextSR);
  if (Status s = Check(doc.readStudyData(src), "cannot copy the patient and study modules"); !s.ok()) return s;
  doc.createNewSeries();
  doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
  (void)doc.setSeriesDescription(req.predecessor ? "TeleRead amended report" : "TeleRead report");
  (void)doc.setManufacturer("TeleRead");
  const std::string now = NowDateTime();
  (void)doc.setContentDate(OFString(now.substr(0, 8).c_str()));
  (void)doc.setContentTime(OFString(now.substr(8).c_str()));

  DSRDocumentTree& tree = doc.getTree();
  if (tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) == 0) {
    return Status::InvalidArgument("cannot create the report's root container");
  }
  if (Status s = Check(tree.getCurrentContentItem().setConceptName(kTitle), "report title"); !s.ok()) return s;
  if (Status s = AddText(tree, true, kFinding, c.findings); !s.ok()) return s;
  if (Status s = AddText(tree, false, kImpression, c.impression); !s.ok()) return s;
  if (!c.recommendation.empty()) {
    if (Status s = AddText(tree, false, kRecommendation, c.recommendation); !s.ok()) return s;
  }
  OFCondition cond = tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Code, kCritical);
  if (cond.good()) cond = tree.getCurrentContentItem().setCodeValue(c.critical ? kYes : kNo);
  if (Status s = Check(cond, "critical finding flag"); !s.ok()) return s;

  OFString study_uid;
  doc.getStudyInstanceUID(study_uid);
  for (const InstanceRef& r : req.evidence) {
    cond = doc.getCurrentRequestedProcedureEvidence().addItem(study_uid, r.series_instance_uid.c_str(),
                                                              r.sop_class_uid.c_str(), r.sop_instance_uid.c_str());
    if (Status s = Check(cond, "evidence " + r.sop_instance_uid); !s.ok()) return s;
  }
  if (req.predecessor) {
    const InstanceRef& p = *req.predecessor;
    cond = doc.getPredecessorDocuments().addItem(study_uid, p.series_instance_uid.c_str(), p.sop_class_uid.c_str(),
                                                 p.sop_instance_uid.c_str());
    if (Status s = Check(cond, "predecessor " + p.sop_instance_uid); !s.ok()) return s;
  }
  if (Status s = Check(doc.completeDocument(), "cannot complete the document"); !s.ok()) return s;
  const DSRCodedEntryValue observer(c.radiologist_id.c_str(), kObserverScheme, c.radiologist_name.c_str());
  if (Status s = Check(doc.verifyDocument(c.radiologist_name.c_str(), observer, c.organization.c_str(), now.c_str()),
                       "cannot mark the report verified");
      !s.ok()) {
    return s;
  }
  DcmFileFormat file;
  if (Status s = Check(doc.write(*file.getDataset()), "cannot encode the report"); !s.ok()) return s;
  cond = file.saveFile(out.c_str(), EXS_LittleEndianExplicit);
  if (cond.bad()) return Status::IOError("cannot write " + out.string() + ": " + cond.text());
  return Status::Ok();
}

Result<ReportInfo> ReadReport(const std::filesystem::path& path) {
  Result<std::unique_ptr<DicomFile>> file = DicomFile::Open(path, 0, false);
  if (!file.ok())
    return Status::InvalidArgument(path.string() + " is not a readable DICOM file: " + file.status().message());
  DcmDataset& ds = file.value()->dataset();
  InstanceSummary summary = Summarize(*file.value());  // before the text is converted below
  OFString cls;
  ds.findAndGetOFString(DCM_SOPClassUID, cls);
  if (cls != kBasicTextSrClass && cls != kEnhancedSrClass) {
    return Status::InvalidArgument(path.string() + " is not a Basic or Enhanced Text SR (SOP class " + Str(cls) + ")");
  }
  // Text in any character set is read as UTF-8.
  if (Status st = ConvertDatasetToUtf8(ds); !st.ok()) {
    return Status::InvalidArgument("cannot decode the report's text: " + st.message());
  }
  DSRDocument doc;
  if (OFCondition st = doc.read(ds); st.bad()) {
    return Status::InvalidArgument(path.string() + " is not a valid SR document: " + st.text());
  }
  ReportInfo info;
  OFString v;
  info.sop_class_uid = Str(cls);
  doc.getSOPInstanceUID(v);
  info.sop_instance_uid = Str(v);
  doc.getSeriesInstanceUID(v);
  info.series_instance_uid = Str(v);
  doc.getStudyInstanceUID(v);
  info.study_instance_uid = Str(v);
  doc.getPatientID(v);
  info.patient_id = Str(v);
  doc.getPatientName(v);
  info.patient_name = Str(v);
  doc.getAccessionNumber(v);
  info.accession_number = Str(v);
  info.completion_flag = DSRTypes::completionFlagToEnumeratedValue(doc.getCompletionFlag());
  info.verification_flag = DSRTypes::verificationFlagToEnumeratedValue(doc.getVerificationFlag());
  OFString date, time;
  doc.getContentDate(date);
  doc.getContentTime(time);
  info.content_datetime = Str(date) + Str(time);

  DSRDocumentTree& tree = doc.getTree();
  auto text = [&tree](const DSRCodedEntryValue& concept) -> std::string {
    if (tree.gotoNamedNode(concept) == 0) return "";
    return Str(tree.getCurrentContentItem().getStringValue());
  };
  info.content.findings = text(kFinding);
  info.content.impression = text(kImpression);
  info.content.recommendation = text(kRecommendation);
  if (tree.gotoNamedNode(kCritical) != 0) {
    info.content.critical = tree.getCurrentContentItem().getCodeValue() == kYes;
  }
  if (info.content.findings.empty() || info.content.impression.empty()) {
    return Status::InvalidArgument(path.string() + " has no Finding or no Impression");
  }
  if (doc.getNumberOfVerifyingObservers() > 0) {
    OFString when, name, org;
    DSRCodedEntryValue code;
    doc.getVerifyingObserver(1, when, name, code, org);
    info.content.radiologist_name = Str(name);
    info.content.organization = Str(org);
    if (Str(code.getCodingSchemeDesignator()) == kObserverScheme)
      info.content.radiologist_id = Str(code.getCodeValue());
  }
  auto refs = [](DSRSOPInstanceReferenceList& list) {
    std::vector<InstanceRef> out;
    if (list.gotoFirstItem().bad()) return out;
    do {
      OFString se, cl, in;
      list.getSeriesInstanceUID(se);
      list.getSOPClassUID(cl);
      list.getSOPInstanceUID(in);
      out.push_back(InstanceRef{Str(se), Str(cl), Str(in)});
    } while (list.gotoNextItem().good());
    return out;
  };
  info.evidence = refs(doc.getCurrentRequestedProcedureEvidence());
  std::vector<InstanceRef> predecessors = refs(doc.getPredecessorDocuments());
  if (!predecessors.empty()) info.predecessor = predecessors.front();
  info.summary = std::move(summary);
  return info;
}

}  // namespace teleread
