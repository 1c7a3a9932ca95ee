import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isPrivateAddress, webhookTargetRefusal } from '../../src/webhooks/address-guard.js';
import { signWebhook } from '../../src/webhooks/signature.js';

describe('webhook target guard (SSRF)', () => {
  it('classifies loopback, private, link-local and reserved addresses as private', () => {
    const privateOnes = ['127.0.0.1', '127.8.9.10', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1'];
    const publicOnes = ['8.8.8.8', '1.1.1.1', '172.32.0.1', '93.184.216.34', '2606:4700:4700::1111', '::ffff:8.8.8.8'];
    for (const a of privateOnes) expect(isPrivateAddress(a), a).toBe(true);
    for (const a of publicOnes) expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses the IPv6 special-purpose forms that embed or reach a private IPv4 host', async () => {
    // Each was accepted before the guard classified addresses with ipaddr.js (issue 16, finding 6).
    const disguised = ['::127.0.0.1', '::7f00:1', '::ffff:0:7f00:1', '2002:7f00:1::', '100::1', '2001::7f00:1', '64:ff9b::7f00:1', '::10.0.0.1'];
    for (const a of disguised) {
      expect(isPrivateAddress(a), a).toBe(true);
      expect(await webhookTargetRefusal(`http://[${a}]:8080/hook`, false), a).toMatch(/private/);
    }
    // Outside 2000::/3, or special-purpose inside it: documentation, benchmarking, ORCHIDv2, unassigned.
    for (const a of ['2001:db8::1', '2001:2::1', '2001:20::1', '4000::1', '3fff::1', 'fe80::1%lo']) expect(isPrivateAddress(a), a).toBe(true);
    // Global unicast stays allowed, including an IPv4-mapped public address.
    for (const a of ['2001:4860:4860::8888', '2a00:1450:4001::1', '::ffff:8.8.8.8']) expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses non-http(s) URLs, credentials, private literals and names resolving to loopback', async () => {
    expect(await webhookTargetRefusal('ftp://example.com/', false)).toBe('must be an http(s) URL');
    expect(await webhookTargetRefusal('file:///etc/passwd', false)).toBe('must be an http(s) URL');
    expect(await webhookTargetRefusal('nope', false)).toBe('must be an absolute http(s) URL');
    expect(await webhookTargetRefusal('https://user:pw@example.com/', false)).toBe('must not contain credentials');
    expect(await webhookTargetRefusal('http://169.254.169.254/latest/meta-data', false)).toMatch(/private/);
    expect(await webhookTargetRefusal('http://[::1]:8080/', false)).toMatch(/private/);
    expect(await webhookTargetRefusal('http://localhost:8080/', false)).toMatch(/resolves to a loopback/);
    expect(await webhookTargetRefusal('https://93.184.216.34/hook', false)).toBeNull();
  });

  it('lets the operator allow private targets', async () => {
    expect(await webhookTargetRefusal('http://127.0.0.1:9/x', true)).toBeNull();
    expect(await webhookTargetRefusal('ftp://127.0.0.1/', true)).toBe('must be an http(s) URL');
  });
});

describe('webhook signature', () => {
  it('is v1=HMAC-SHA256 over "timestamp.body" with the secret', () => {
    const expected = createHmac('sha256', 'whsec_test').update('1700000000.{"a":1}').digest('hex');
    expect(signWebhook('whsec_test', 1700000000, '{"a":1}')).toBe(`v1=${expected}`);
    expect(signWebhook('whsec_test', 1700000001, '{"a":1}')).not.toBe(`v1=${expected}`);
  });
});
