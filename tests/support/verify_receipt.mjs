// Verifies a consent receipt (compact JWS, EdDSA) with Node's WebCrypto alone: an independent
// check of what Consentry signs. Usage: node verify_receipt.mjs <jwks.json> <receipt>
// Prints the claims and exits 0 when valid; prints the reason and exits 1 when not.
import { readFileSync } from 'node:fs';

const [jwksPath, jws] = process.argv.slice(2);
const jwks = JSON.parse(readFileSync(jwksPath, 'utf8'));
const fromB64url = (s) => Buffer.from(s, 'base64url');
const parts = jws.split('.');
if (parts.length !== 3) {
  console.log('invalid: not a compact JWS');
  process.exit(1);
}
const header = JSON.parse(fromB64url(parts[0]).toString('utf8'));
if (header.alg !== 'EdDSA') {
  console.log(`invalid: alg ${header.alg}`);
  process.exit(1);
}
const jwk = jwks.keys.find((k) => k.kid === header.kid);
if (!jwk) {
  console.log('invalid: unknown kid');
  process.exit(1);
}
const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, { name: 'Ed25519' }, false, ['verify']);
const ok = await crypto.subtle.verify(
  { name: 'Ed25519' },
  key,
  fromB64url(parts[2]),
  new TextEncoder().encode(`${parts[0]}.${parts[1]}`),
);
if (!ok) {
  console.log('invalid: signature');
  process.exit(1);
}
console.log(fromB64url(parts[1]).toString('utf8'));
