import { execFile } from 'node:child_process';

/** PUTs `file` to `url` with curl (streamed from disk); resolves to status and seconds. */
export function curlPut(url: string, file: string, contentType: string): Promise<{ status: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', '-T', file, '-H', `Content-Type: ${contentType}`, '-H', 'Expect:', url],
      { timeout: 120_000 },
      (err, stdout) => {
        if (err) return reject(err);
        const [status, seconds] = stdout.trim().split(' ');
        resolve({ status: Number(status), seconds: Number(seconds) });
      },
    );
  });
}
