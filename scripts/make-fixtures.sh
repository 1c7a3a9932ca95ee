#!/usr/bin/env bash
# Makes the small media fixtures under test/fixtures/media/ (checked in; each a few KB, the few
# that must reach past the first 64 KiB a little more).
# Genuine files are encoded by the npm-shipped ffmpeg (@ffmpeg-installer/ffmpeg) from
# its built-in test sources; hostile ones are written byte by byte. Everything is
# deterministic (bitexact encoders, seeded pseudo-random bytes), so a re-run changes
# nothing that matters. What each file is for: test/fixtures/media/README.md.
#
# Usage: scripts/make-fixtures.sh [output-dir]   (default test/fixtures/media)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-test/fixtures/media}
mkdir -p "$OUT"
FFMPEG=$(node -e "import('@ffmpeg-installer/ffmpeg').then(m=>console.log(m.default.path))")

# Quiet, no metadata, no encoder version strings: the bytes depend on the input alone.
ff() { "$FFMPEG" -hide_banner -loglevel error -y "$@"; }
BITEXACT=(-map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact)
IMAGE=(-f lavfi -i testsrc=size=16x16:rate=1)
VIDEO=(-f lavfi -i testsrc=size=32x32:rate=10:duration=0.5)
AUDIO=(-f lavfi -i sine=frequency=440:sample_rate=8000:duration=0.25)

# --- genuine media, one per entry of src/domain/media-types.ts --------------------------
ff "${IMAGE[@]}" -frames:v 1 "${BITEXACT[@]}" "$OUT/sample.png"
ff "${IMAGE[@]}" -frames:v 1 -q:v 5 "${BITEXACT[@]}" "$OUT/sample.jpg"
ff "${IMAGE[@]}" -frames:v 1 -c:v libwebp -quality 50 "${BITEXACT[@]}" "$OUT/sample.webp"
ff "${IMAGE[@]}" -frames:v 1 "${BITEXACT[@]}" "$OUT/sample.gif"
ff "${VIDEO[@]}" -c:v libx264 -preset ultrafast -pix_fmt yuv420p "${BITEXACT[@]}" "$OUT/sample.mp4"
ff "${VIDEO[@]}" -c:v libx264 -preset ultrafast -pix_fmt yuv420p "${BITEXACT[@]}" -f mov "$OUT/sample.mov"
ff "${VIDEO[@]}" -c:v libvpx -b:v 50k "${BITEXACT[@]}" "$OUT/sample.webm"
ff "${AUDIO[@]}" -ac 1 -c:a libmp3lame -b:a 16k "${BITEXACT[@]}" "$OUT/sample.mp3"
ff "${AUDIO[@]}" -ac 1 -c:a pcm_u8 "${BITEXACT[@]}" "$OUT/sample.wav"
ff "${AUDIO[@]}" -ac 1 -c:a aac -b:a 16k "${BITEXACT[@]}" -f ipod "$OUT/sample.m4a"
ff "${AUDIO[@]}" -ac 1 -c:a aac -b:a 16k "${BITEXACT[@]}" -f adts "$OUT/sample.aac"
ff "${AUDIO[@]}" -ac 1 -c:a libvorbis -q:a 0 "${BITEXACT[@]}" "$OUT/sample.ogg"
ff "${AUDIO[@]}" -ac 1 -c:a libopus -b:a 8k "${BITEXACT[@]}" -f webm "$OUT/sample.weba"
ff "${AUDIO[@]}" -ac 1 -c:a flac "${BITEXACT[@]}" "$OUT/sample.flac"

# --- hostile files ----------------------------------------------------------------------
OUT="$OUT" node --input-type=module <<'EOF'
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import path from 'node:path';

const out = process.env.OUT;
const file = (name) => path.join(out, name);
const png = readFileSync(file('sample.png'));
const gif = readFileSync(file('sample.gif'));
const mp4 = readFileSync(file('sample.mp4'));

// A page a browser would run if it were ever served as HTML.
writeFileSync(file('page.html'), '<!doctype html>\n<html><body><script>fetch("/api/s3/presign-upload")</script></body></html>\n');

// An image format that carries script: deliberately not on the allow-list.
writeFileSync(
  file('image.svg'),
  '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">' +
    '<script>alert(document.domain)</script><rect width="16" height="16"/></svg>\n',
);

// HTML/JS first, a whole PNG later (inside a comment): a check that looked for the PNG
// signature anywhere, or trusted the declared type, would take it for an image.
writeFileSync(
  file('polyglot-html-png.html'),
  Buffer.concat([Buffer.from('<html><script>alert(document.domain)</script><!--'), png, Buffer.from('--></html>\n')]),
);

// GIF/JS polyglot: a genuine, decodable GIF whose bytes also parse as JavaScript
// (`GIF89a/*...binary...*/=alert(1);`). The logical-screen width becomes "/*" (0x2a2f),
// and the script sits after the GIF trailer, where decoders stop reading.
const screenWidth = Buffer.from('/*', 'latin1');
const body = Buffer.concat([gif.subarray(0, 6), screenWidth, gif.subarray(8)]);
if (body.subarray(8).includes(Buffer.from('*/', 'latin1'))) throw new Error('sample.gif contains "*/": cannot make the GIF/JS polyglot');
writeFileSync(file('polyglot-gif-js.gif'), Buffer.concat([body, Buffer.from('*/=alert(document.domain);\n', 'latin1')]));

// Uploads interrupted half-way: their first bytes still sniff as PNG and MP4, but the
// chunk and box lengths they state run past the end.
writeFileSync(file('truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
writeFileSync(file('truncated.mp4'), mp4.subarray(0, Math.floor(mp4.length / 2)));

writeFileSync(file('empty.bin'), Buffer.alloc(0));

// --- containers in disguise (issue 16): each must be rejected at verification -----------

// An ID3v2 tag: "ID3", version, flags, then the body size as four 7-bit ("syncsafe") bytes.
const id3 = (body, { version = 4, flags = 0 } = {}) => {
  const header = Buffer.from([0x49, 0x44, 0x33, version, 0, flags, 0, 0, 0, 0]);
  for (let i = 0; i < 4; i++) header[6 + i] = (body.length >> (7 * (3 - i))) & 0x7f;
  return Buffer.concat([header, body]);
};
const mp3 = readFileSync(file('sample.mp3'));

// An "MP3" that is an HLS playlist behind an ID3 tag longer than the 64 KiB a sniffer reads
// (file-type gives up inside the tag and says audio/mpeg). ffmpeg, left to probe, would skip
// the tag, find the playlist, and read the files it names: another user's upload and /etc/passwd.
const playlist =
  '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n' +
  '#EXTINF:1.0,\n../../../objects/users/bob/user-uploads/batch_0000000000000000/file_0000000000000000.mp3\n' +
  '#EXTINF:1.0,\n/etc/passwd\n#EXT-X-ENDLIST\n';
writeFileSync(file('id3-hls.mp3'), Buffer.concat([id3(Buffer.alloc(70_000)), Buffer.from(playlist)]));

// ID3 in front of an image: the tag's body is an HTML page, a whole PNG follows the tag.
// Sniffers (and ffmpeg) skip the tag and see a PNG.
const page = Buffer.from('<html><body><script>alert(document.domain)</script></body></html>\n');
writeFileSync(file('id3-html-png.png'), Buffer.concat([id3(page, { version: 3 }), png]));

// Truncated files behind a small ID3 tag: a truncation check that reads byte 0 sees "ID3".
writeFileSync(file('id3-truncated.png'), Buffer.concat([id3(Buffer.alloc(32)), png.subarray(0, Math.floor(png.length / 2))]));
writeFileSync(file('id3-truncated.mp4'), Buffer.concat([id3(Buffer.alloc(32)), mp4.subarray(0, Math.floor(mp4.length / 2))]));

// A GIF signature followed by an HTML page: file-type says image/gif.
writeFileSync(file('gif-html.gif'), Buffer.from('GIF89a<html><body><script>alert(document.domain)</script></body></html>\n', 'latin1'));

// PNG chunks with their CRCs.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (bytes) => {
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([length, typed, crc]);
};
const ihdr = (width, height) => {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data[8] = 8; // bit depth
  data[9] = 2; // RGB
  return chunk('IHDR', data);
};
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const noise = (bytes, seed) => {
  const blocks = [];
  for (let i = 0; blocks.length * 32 < bytes; i++) blocks.push(createHash('sha256').update(`${seed}-${i}`).digest());
  return Buffer.concat(blocks).subarray(0, bytes);
};

// A well-formed PNG (signature, IHDR, CRCs, IEND) whose image data is noise, not zlib: nothing
// decodes it. Before issue 16 it verified, and the renderer looped on it until the job timed out.
writeFileSync(file('garbage.png'), Buffer.concat([PNG_SIGNATURE, ihdr(16, 16), chunk('IDAT', noise(8192, 'keyframe-garbage-idat')), chunk('IEND', Buffer.alloc(0))]));

// A small PNG whose header declares 8000×8000 (64 MP): a pixel bomb, refused from its header.
writeFileSync(
  file('huge-dimensions.png'),
  Buffer.concat([PNG_SIGNATURE, ihdr(8000, 8000), chunk('IDAT', deflateSync(Buffer.alloc(64 * 1024), { level: 9 })), chunk('IEND', Buffer.alloc(0))]),
);

// --- genuine files whose headers lie beyond the first 64 KiB: each must verify ----------

// A genuine JPEG with an XMP packet (legitimate XML markup inside an image) and an EXIF
// segment padded to its 64 KiB maximum: its SOF (the dimensions) starts past the first 64 KiB.
const jpg = readFileSync(file('sample.jpg'));
const segment = (marker, payload) => {
  const header = Buffer.from([0xff, marker, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([header, payload]);
};
const xmp = Buffer.from(
  'http://ns.adobe.com/xap/1.0/\0<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>' +
    '<rdf:li xml:lang="x-default">Keyframe fixture</rdf:li></rdf:Alt></dc:title></rdf:Description>' +
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>',
  'latin1',
);
// "Exif\0\0", a little-endian TIFF header, an IFD with no entries, then padding.
const exif = Buffer.alloc(65_533);
Buffer.from('Exif\0\0II*\0\x08\0\0\0', 'latin1').copy(exif);
writeFileSync(file('large-exif.jpg'), Buffer.concat([jpg.subarray(0, 2), segment(0xe1, xmp), segment(0xe1, exif), jpg.subarray(2)]));

// A genuine MP3 behind two ID3 tags in a row, the first one padded past 64 KiB (cover art does
// this): the audio starts beyond the first read, so verification reads again where it starts.
writeFileSync(file('large-id3.mp3'), Buffer.concat([id3(Buffer.alloc(70_000)), mp3]));

// 4 KiB of seeded pseudo-random bytes (SHA-256 in counter mode): noise, but the same noise every run.
const blocks = [];
for (let i = 0; i < 128; i++) blocks.push(createHash('sha256').update(`keyframe-fixture-${i}`).digest());
writeFileSync(file('random.bin'), Buffer.concat(blocks));
EOF

ls -l "$OUT"
