# A scratch reading centre for the scripts that run the real server outside ctest (benchmarks,
# soak, fault injection): sourced, not run. Needs $server (teleread-server) and $root (the
# repository).

# scratch_pki DIR NAME...: a CA in DIR, the server's certificate and one radiologist
# certificate per NAME.
scratch_pki() {
  local dir=$1 who
  shift
  "$server" pki init "$dir" >/dev/null &&
    "$server" pki issue "$dir" --kind server --name teleread-server >/dev/null || return 1
  for who in "$@"; do "$server" pki issue "$dir" --kind radiologist --name "$who" >/dev/null || return 1; done
}

# scratch_config PKI OUT [SED-EXPRESSION...]: the sample config/teleread.toml with PKI's
# certificates, no free-space floor and a 1 s quiet period, then each extra sed expression
# (e.g. "s|^port = 11201$|port = 4242|" to point Zhuozhou's delivery at a member PACS).
scratch_config() {
  local pki=$1 out=$2 e
  shift 2
  local edits=(-e "s|^quiet_period_seconds = .*|quiet_period_seconds = 1|"
               -e "s|^min_free_disk_mb = .*|min_free_disk_mb = 0|"
               -e "s|^certificate = .*|certificate = \"$pki/teleread-server.pem\"|"
               -e "s|^key = .*|key = \"$pki/teleread-server.key\"|"
               -e "s|^ca = .*|ca = \"$pki/ca.pem\"|")
  for e in "$@"; do edits+=(-e "$e"); done
  sed "${edits[@]}" "$root/config/teleread.toml" >"$out"
}

# scratch_profile PKI NAME HTTP_PORT OUT: the teleread CLI profile of radiologist NAME.
scratch_profile() {
  cat >"$4" <<TOML
server = "https://127.0.0.1:$3"
certificate = "$1/$2.pem"
key = "$1/$2.key"
ca = "$1/ca.pem"
TOML
}
