// DCMTK's own diagnostics (oflog, a log4cplus copy) go through our spdlog logger, with our
// timestamp and format, instead of DCMTK's console appender writing raw lines to the terminal.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/oflog/appender.h"
#include "dcmtk/oflog/logger.h"
#include "dcmtk/oflog/oflog.h"
#include "dcmtk/oflog/spi/logevent.h"

#include "common/log.h"

namespace teleread {
namespace {

class SpdlogAppender : public dcmtk::log4cplus::Appender {
 public:
  SpdlogAppender() { setName(DCMTK_LOG4CPLUS_TEXT("teleread")); }
  ~SpdlogAppender() override { destructorImpl(); }
  void close() override {}

 protected:
  void append(const dcmtk::log4cplus::spi::InternalLoggingEvent& event) override {
    const int level = event.getLogLevel();
    spdlog::level::level_enum to = spdlog::level::trace;
    if (level >= dcmtk::log4cplus::ERROR_LOG_LEVEL) {
      to = spdlog::level::err;
    } else if (level >= dcmtk::log4cplus::WARN_LOG_LEVEL) {
      to = spdlog::level::warn;
    } else if (level >= dcmtk::log4cplus::INFO_LOG_LEVEL) {
      // DCMTK's info lines can quote attribute values (names); ours carry none at info.
      to = spdlog::level::debug;
    }
    spdlog::log(to, "{}: {}", event.getLoggerName().c_str(), event.getMessage().c_str());
  }
};

}  // namespace

void RouteDcmtkLogging() {
  dcmtk::log4cplus::Logger root = dcmtk::log4cplus::Logger::getRoot();
  root.removeAllAppenders();
  root.addAppender(dcmtk::log4cplus::SharedAppenderPtr(new SpdlogAppender));
}

}  // namespace teleread
