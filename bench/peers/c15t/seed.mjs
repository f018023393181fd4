// Seeds N subjects through c15t's public write (POST /subjects, same body as c15t_write.lua),
// 4 requests in flight; prints their ids one a line. Exits 1 unless every answer is 2xx.
//   node seed.mjs <base_url> <count> > ids.txt
import { randomBytes } from 'node:crypto';

const [base, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!base || !Number.isInteger(count) || count < 1) {
  console.error('usage: node seed.mjs <base_url> <count>');
  process.exit(64);
}

// Like c15t's generateSubjectId(): 8 bytes of time since 2023-11-14, 12 random bytes, base58.
const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function subjectId() {
  const buf = randomBytes(20);
  buf.writeBigUInt64BE(BigInt(Date.now() - 1_700_000_000_000), 0);
  let n = BigInt('0x' + buf.toString('hex'));
  let s = '';
  while (n > 0n) { s = ALPHABET[Number(n % 58n)] + s; n /= 58n; }
  for (const b of buf) { if (b !== 0) break; s = '1' + s; }
  return `sub_${s}`;
}

const ids = Array.from({ length: count }, subjectId);
let next = 0, bad = 0, firstError = null;
async function worker(limit = ids.length) {
  while (next < limit) {
    const i = next++;
    const b = (i + 7) % 8; // the first write grants all three: every purpose row exists after it
    const res = await fetch(`${base}/subjects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://bench.example' },
      body: JSON.stringify({
        type: 'cookie_banner', domain: 'bench.example',
        preferences: { necessary: true, measurement: b % 2 === 1, marketing: b % 4 >= 2, experience: b >= 4 },
        subjectId: ids[i], jurisdiction: 'GDPR', jurisdictionModel: 'opt-in',
        givenAt: Date.now(), uiSource: 'banner', consentAction: 'custom',
      }),
    });
    const text = await res.text();
    if (!res.ok) { bad++; firstError ??= `${res.status} ${text.slice(0, 300)}`; }
  }
}
// The first write alone: it creates the domain, the cookie_banner policy and the purposes.
// c15t's find-or-create of these has no unique constraint behind it, and concurrent first
// writes create duplicates (seen: several "cookie_banner" policies, the older consents then
// no longer on the "latest policy"). One write first gives the steady state of a live site.
await worker(1);
await Promise.all([worker(), worker(), worker(), worker()]);
if (bad) {
  console.error(`seeding: ${bad} of ${count} answers were not 2xx; first: ${firstError}`);
  process.exit(1);
}
process.stdout.write(ids.join('\n') + '\n');
