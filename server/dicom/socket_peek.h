#pragma once
// What the listener learns from a fresh connection before DCMTK takes it over: whether the
// peer's first PDU or TLS record has arrived, without consuming a byte, so that a slow or silent
// peer never holds the hand-off to DCMTK that all connections share.
#include <chrono>
#include <string>

namespace teleread {

enum class Arrival { kComplete, kPartial, kFailed };

// Looks, without consuming or blocking, whether the whole A-ASSOCIATE-RQ PDU has arrived.
// kFailed on close, a socket error or an oversized request.
Arrival PeekAssociateRequest(int fd);

// Waits until the whole A-ASSOCIATE-RQ PDU has arrived. False on timeout, close or a bad header.
bool WaitForAssociateRequest(int fd, std::chrono::steady_clock::time_point deadline);

// The first byte of a connection, without consuming it: 0x16 opens a TLS handshake, 0x01 an
// A-ASSOCIATE-RQ. -1 on close, error or the deadline.
int PeekFirstByte(int fd, std::chrono::steady_clock::time_point deadline);

// A peer that stops reading or writing mid-record is dropped after `seconds`, also where DCMTK
// would block (inside SSL_read, or writing a C-GET to a peer that does not read).
void SetSocketTimeouts(int fd, int seconds);

// The peer's numeric address, for log lines written before DCMTK knows it.
std::string PeerAddress(int fd);

}  // namespace teleread
