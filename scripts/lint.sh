#!/usr/bin/env bash
# Lints the whole repository and fails on the first report: gofmt -l (any file
# listed fails), then go vet and staticcheck in every Go module (each go.mod
# found, so a module split needs no change here), then shellcheck on every
# shell script (*.sh and files with a sh/bash shebang). Builds and module
# checkouts under .build/ and bin/ are not ours and are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2

# find_ours prints the repository's files matching the find tests given,
# pruning .git, build output and test data.
find_ours() {
	find . \( -path ./.git -o -path ./.build -o -path ./bin -o -name testdata -o -name vendor \) -prune -o \
		-type f \( "$@" \) -print | sort
}

if ! command -v shellcheck >/dev/null; then
	scripts/deps.sh shellcheck
fi
bin=$PWD/.build/bin
if [ ! -x "$bin/staticcheck" ] || ! "$bin/staticcheck" -version | grep -qF "${STATICCHECK_VERSION#v}"; then
	GOBIN=$bin go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

mapfile -t gofiles < <(find_ours -name '*.go')
unformatted=$(gofmt -l "${gofiles[@]}")
if [ -n "$unformatted" ]; then
	echo "lint: not gofmt'd (run gofmt -w on them):" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "lint: gofmt: ${#gofiles[@]} files clean"

mapfile -t modules < <(find_ours -name go.mod)
for mod in "${modules[@]}"; do
	dir=$(dirname "$mod")
	echo "lint: go vet and staticcheck in $dir"
	(cd "$dir" && go vet ./... && "$bin/staticcheck" ./...)
done

mapfile -t scripts < <(
	find_ours -name '*.sh'
	find_ours ! -name '*.sh' ! -name '*.go' -perm -u+x | while read -r f; do
		head -n1 "$f" | grep -qE '^#!.*[/ ](ba)?sh$' && echo "$f"
	done
)
shellcheck -x "${scripts[@]}"
echo "lint: shellcheck: ${#scripts[@]} scripts clean"
