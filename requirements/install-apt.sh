#!/usr/bin/env bash
# Installs the Debian packages named in requirements/apt-*.txt and requirements/dictionaries.tsv.
# Runs `apt-get update` (once) only when something is missing, and uses sudo when not root,
# so `make setup` is cheap to repeat.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

wanted() {
    sed -e 's/#.*//' "$here"/apt-*.txt | tr -s ' \t' '\n\n'
    grep -v '^#' "$here/dictionaries.tsv" | cut -f2 | tr ' ' '\n'
}

missing=()
for pkg in $(wanted | grep -v -e '^$' -e '^-$' | sort -u); do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "apt: all packages installed"
    exit 0
fi
sudo=()
[[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
echo "apt: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
