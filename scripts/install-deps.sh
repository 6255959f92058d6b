#!/usr/bin/env bash
# Installs TeleRead's build and test dependencies from Debian 12's archive.
# Used by the README's commands and by CI; safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libdcmtk-dev dcmtk libpng-dev # DICOM toolkit and its command-line peers (storescu, ...); PNG output of `teleread view`
  libboost-dev                  # Asio/Beast (header-only)
  libsqlite3-dev sqlite3        # the embedded index, and the CLI for inspecting it
  libssl-dev openssl            # TLS and signatures; the openssl CLI for test certificates
  catch2                        # unit and integration tests (2.13)
  libtomlplusplus-dev           # config parsing with source positions for error messages
  libcli11-dev                  # command-line parsing
  libspdlog-dev                 # thread-safe levelled logging
  libxxhash-dev                 # XXH3: the hash in each segment object's trailer (server/store/segment_trailer.h)
  nlohmann-json3-dev            # JSON for the reading API
  zlib1g-dev                    # gzip worklist answers (deflate once per page) and the viewer's inflate
  dicom3tools                   # dciodvfy, for validating what we produce
  orthanc                       # a member PACS (DICOM TLS interop test, benchmarks)
  procps psmisc                 # ps/pkill/fuser for tests that start and stop servers
  curl python3                  # the HTTPS client of the tests and the demo, and its JSON printing
  clang libclang-rt-14-dev      # libFuzzer and its sanitizers, for scripts/fuzz.sh
  libopenjp2-7-dev              # JPEG 2000 decoding (DCMTK 3.6.7 has no JPEG 2000 codec)
  libfreetype-dev fonts-wqy-microhei  # overlay text in any script: CJK patient names on images and ECGs
  libchafa-dev libglib2.0-dev   # the reader's terminal graphics (kitty, sixel, iTerm2, symbols); chafa's pkg-config needs glib
  libgdcm-tools                 # gdcmconv --raw: reference pixels of JPEG 2000 files in tests
  python3-pydicom               # public real-world test files (CT, MR, JPEG 2000, ECG, SR, charsets) for render tests
  tmux                          # drives the interactive reader in tests
  libcairo2-dev libpango1.0-dev # the reports' PDF copies: Pango lays out (and shapes, wraps) the text, Cairo writes the PDF
  fonts-noto-cjk                # the PDF copies' fallback for the rare CJK characters WenQuanYi lacks (Extension A)
  poppler-utils                 # pdftotext: the tests read the PDF copies back as text
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
