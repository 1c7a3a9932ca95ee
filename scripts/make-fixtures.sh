#!/usr/bin/env bash
# Makes the tiny media fixtures under test/fixtures/media/ (checked in; each a few KB).
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

// 4 KiB of seeded pseudo-random bytes (SHA-256 in counter mode): noise, but the same noise every run.
const blocks = [];
for (let i = 0; i < 128; i++) blocks.push(createHash('sha256').update(`keyframe-fixture-${i}`).digest());
writeFileSync(file('random.bin'), Buffer.concat(blocks));
EOF

ls -l "$OUT"
