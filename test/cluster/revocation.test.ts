import { describe, expect, it } from 'vitest';
import { clusterEnv, clusterOf, createKey, keyframeCli, presign } from './cluster.js';

// Issue 11's "revocation everywhere at once", on the cluster: a key every API node has served (and
// cached) is revoked by the real CLI on the cluster's database; each node refuses it within 1 s
// of the CLI returning (NOTIFY on commit, heard on every node's LISTEN connection).

const env = clusterEnv();

describe.skipIf(!env)('revocation across the API nodes', () => {
  it('a key revoked with `keyframe keys revoke` is refused (401) by all three nodes within 1 s', async () => {
    const cluster = clusterOf(env!);
    const revoked = await createKey(cluster, 'revoked');
    const other = await createKey(cluster, 'still-valid');
    for (const node of cluster.apiUrls) {
      // Twice: the second answer comes from the node's key cache.
      expect((await presign(node, revoked.key)).status, node).toBe(200);
      expect((await presign(node, revoked.key)).status, node).toBe(200);
    }

    await keyframeCli(cluster, ['keys', 'revoke', revoked.id]);
    const deadline = Date.now() + 1000; // the bound, from the moment the CLI has returned
    const pending = new Set(cluster.apiUrls);
    while (pending.size > 0) {
      for (const node of [...pending]) {
        const { status } = await presign(node, revoked.key);
        if (status === 401) pending.delete(node);
        else expect(status, node).toBe(200);
      }
      if (pending.size > 0 && Date.now() > deadline) throw new Error(`still accepted 1 s after \`keys revoke\` returned by: ${[...pending].join(', ')}`);
    }

    // Refused for good, through nginx too; the other key still works everywhere.
    for (const base of [...cluster.apiUrls, cluster.url]) {
      expect((await presign(base, revoked.key)).status, base).toBe(401);
      expect((await presign(base, other.key)).status, base).toBe(200);
    }
  });
});
