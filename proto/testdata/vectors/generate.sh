#!/usr/bin/env bash
# Regenerates the envelope test vectors: keys and self-signed certificates made by the openssl
# command line, signing inputs made by examples/vector_inputs.rs, and signatures made by openssl
# over pae.bin. The vectors are checked in; tests/vectors.rs verifies openssl's signatures with
# our code and our signatures with openssl, so the format is proved interoperable both ways.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
distid=1234567812345678
san="subjectAltName=URI:spiffe://wagelink.dev/partner/hrss-500112"
# End-entity signing certificates: not CAs, digitalSignature only.
leaf=(-addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature")

for alg in p256 ed25519 sm2; do
  d="$here/$alg"
  rm -rf "$d" && mkdir -p "$d"
  case "$alg" in
    p256)
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/key.pem"
      openssl req -new -x509 -key "$d/key.pem" -sha256 -days 36500 \
        -subj "/O=wagelink test vectors/CN=hrss-500112 p256" -addext "$san" "${leaf[@]}" -out "$d/cert.pem" ;;
    ed25519)
      openssl genpkey -algorithm ed25519 -out "$d/key.pem"
      openssl req -new -x509 -key "$d/key.pem" -days 36500 \
        -subj "/O=wagelink test vectors/CN=hrss-500112 ed25519" -addext "$san" "${leaf[@]}" -out "$d/cert.pem" ;;
    sm2)
      openssl genpkey -algorithm SM2 -out "$d/key.pem"
      openssl req -new -x509 -key "$d/key.pem" -sm3 -sigopt "distid:$distid" -days 36500 \
        -subj "/O=wagelink test vectors/CN=hrss-500112 sm2" -addext "$san" "${leaf[@]}" -out "$d/cert.pem" ;;
  esac
  (cd "$here/../../.." && cargo run -q -p wagelink-proto --example vector_inputs -- "$d")
  case "$alg" in
    p256) openssl dgst -sha256 -sign "$d/key.pem" -out "$d/sig.bin" "$d/pae.bin" ;;
    ed25519) openssl pkeyutl -sign -inkey "$d/key.pem" -rawin -in "$d/pae.bin" -out "$d/sig.bin" ;;
    sm2) openssl dgst -sm3 -sign "$d/key.pem" -sigopt "distid:$distid" -out "$d/sig.bin" "$d/pae.bin" ;;
  esac
done
echo "vectors written to $here"
