// Preloaded into the server under soak (NODE_OPTIONS="--expose-gc --import <this file>"):
// on SIGUSR2 it runs a full garbage collection and writes the heap still in use
// to KEYFRAME_HEAP_PROBE_FILE. RSS alone cannot tell a leak from V8 letting old
// space grow between full collections; the live heap after a full GC can.
import { writeFileSync } from 'node:fs';

const file = process.env.KEYFRAME_HEAP_PROBE_FILE;
if (file && typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', () => {
    globalThis.gc();
    writeFileSync(file, JSON.stringify({ heapUsed: process.memoryUsage().heapUsed, at: Date.now() }));
  });
}
