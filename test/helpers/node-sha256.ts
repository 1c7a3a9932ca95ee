import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';

/**
 * Node's own SHA-256 in the shape the AWS SDK's SigV4 signer takes (what
 * @smithy/hash-node does): a plain hash, or an HMAC when constructed with a
 * secret. Lets the tests check Keyframe's signer against the SDK's.
 */
export class NodeSha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: string | Uint8Array) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', secret);
  }
  update(data: string | Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    throw new Error('not used by the signer');
  }
}
