#pragma once
// The server side of a DICOM TLS connection, done by the listener's worker before DCMTK sees it:
// the handshake, then the whole A-ASSOCIATE-RQ, on a non-blocking socket under one deadline, so
// that a slow or silent TLS client holds only its own worker, never the listener's shared
// hand-off to DCMTK.
#include <chrono>
#include <memory>
#include <string>

#include "server/reading/caller_policy.h"

class DcmTransportConnection;
struct ssl_ctx_st;

namespace teleread {

// A connection for DCMTK that first serves the request already read, or nullptr (and `error`)
// on failure, the socket then still open. `peer` says what the handshake established.
// The socket is blocking again afterwards.
std::unique_ptr<DcmTransportConnection> AcceptTls(ssl_ctx_st* ctx, int fd,
                                                  std::chrono::steady_clock::time_point deadline, TlsPeer& peer,
                                                  std::string& error);

}  // namespace teleread
