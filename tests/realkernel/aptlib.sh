# shellcheck shell=bash
# A private apt state for the real-kernel scripts (fetch-kernels.sh, fetch-tools.sh): packages of other
# Debian suites are downloaded (never installed) through our own sources list and state directory, passed
# with -o, so the machine's own apt setup is left untouched. The mirror URI is read at run time from the
# machine's apt configuration, so no host name is written into the repository.
#
# Source it; it defines functions only. The caller defines die() and log().
#   apt_private_setup DIR LISTNAME SUITE...   sources list DIR/LISTNAME for the suites (main, Packages
#                                             only), state and cache under DIR; sets APTDIR, SRC, APT_OPTS.
#                                             A suite written arm64:SUITE gets an [arch=arm64] line (the
#                                             arm64 guests' kernels and userland) and apt then knows arm64
#                                             too (name its packages PKG:arm64); plain suites stay amd64
#   apt_update                                apt-get update of that state (keyring upgrade + retry once)
#   mirror_uri                                the machine's Debian main-archive URI

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian main-archive URI from the machine's deb822 sources (first URIs:
# line that is not the security archive), or from a one-line sources.list.
mirror_uri() {
  local uri=""
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    [[ -n $uri ]] && break
  done
  if [[ -z $uri ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r $f ]] || continue
      uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) { if ($i !~ /security/) { print $i; exit } else break } }' "$f")
      [[ -n $uri ]] && break
    done
  fi
  shopt -u nullglob
  [[ -n $uri ]] || die "no Debian mirror URI found in /etc/apt/sources.list.d/*.sources or sources.list"
  echo "${uri%/}"
}

# apt_private_setup DIR LISTNAME SUITE...
apt_private_setup() {
  APTDIR=$1
  local list=$2 uri s
  shift 2
  uri=$(mirror_uri)
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
  # Our own one-line sources list: only the suites still needed, main only, and
  # only the Packages index (no Translations, no DEP-11 from appstream's apt.conf.d).
  SRC=$APTDIR/$list
  local arm64=0
  for s in "$@"; do
    case $s in
      arm64:*) echo "deb [arch=arm64 target=Packages signed-by=$KEYRING] $uri ${s#arm64:} main"; arm64=1 ;;
      *) echo "deb [arch=amd64 target=Packages signed-by=$KEYRING] $uri $s main" ;;
    esac
  done >"$SRC"
  # With an arm64 line, apt must know arm64 as an architecture (else it skips that line); only then, so the
  # amd64-only state stays what it was.
  [[ $arm64 == 1 ]] || arm64=
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$SRC"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Acquire::Languages=none"
    # Download into our own directory as root; avoids the _apt sandbox warning.
    -o "APT::Sandbox::User=root"
  )
  if [[ -n $arm64 ]]; then
    APT_OPTS+=(-o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64")
  fi
}

# The archive keyring must carry the bullseye and trixie keys, or apt refuses
# those Release files (bookworm's debian-archive-keyring 2023.3+deb12u2 has both).
# Rather than inspecting the keyring (gpg need not be installed), run the update
# and, if apt reports a signature problem, upgrade debian-archive-keyring from
# the machine's own sources once and retry.
apt_update() {
  local outf=$APTDIR/update.log
  if apt-get "${APT_OPTS[@]}" -q update </dev/null >"$outf" 2>&1; then
    return 0
  fi
  if grep -qE 'NO_PUBKEY|is not signed|EXPKEYSIG|public key is not available|signatures were invalid' "$outf"; then
    log "apt could not verify a suite with $KEYRING: upgrading debian-archive-keyring and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade debian-archive-keyring </dev/null
    if apt-get "${APT_OPTS[@]}" -q update </dev/null >"$outf" 2>&1; then
      return 0
    fi
  fi
  cat "$outf" >&2
  die "apt-get update of the private sources ($SRC) failed (see above; keyring $KEYRING)"
}
