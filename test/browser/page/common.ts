// Shared by the page scripts: wires the page's file input to an Uppy instance and exposes
// its outcome on `window.uppyResult` for the test (Playwright) to wait for.

interface UppyLike {
  addFile(file: { name: string; type: string; data: File; source?: string }): unknown;
  on(event: string, handler: (...args: any[]) => void): unknown;
}

declare global {
  interface Window {
    startUppy(endpoint: string, apiKey: string): void;
    uppyResult?: unknown;
    uppyEvents: string[];
    /** Part numbers Uppy reported uploaded (its `s3-multipart:part-uploaded` event). */
    uppyParts: number[];
  }
}

export function exposeUppy(make: (endpoint: string, apiKey: string) => UppyLike): void {
  window.uppyEvents = [];
  window.uppyParts = [];
  window.startUppy = (endpoint, apiKey) => {
    const uppy = make(endpoint, apiKey);
    const input = document.querySelector<HTMLInputElement>('#file')!;
    uppy.on('upload-error', (file: any, err: any) => window.uppyEvents.push(`upload-error ${file?.name}: ${err?.message ?? err}`));
    uppy.on('error', (err: any) => window.uppyEvents.push(`error: ${err?.message ?? err}`));
    uppy.on('upload-success', (file: any) => window.uppyEvents.push(`upload-success ${file?.name}`));
    uppy.on('s3-multipart:part-uploaded', (_file: any, part: any) => window.uppyParts.push(Number(part?.PartNumber)));
    uppy.on('complete', (result: any) => {
      window.uppyResult = {
        successful: (result.successful ?? []).map((f: any) => ({ name: f.name, size: f.size, s3Multipart: f.s3Multipart ?? null, uploadURL: f.uploadURL ?? null, response: f.response ?? null })),
        failed: (result.failed ?? []).map((f: any) => ({ name: f.name, error: String(f.error ?? '') })),
      };
    });
    input.addEventListener('change', () => {
      for (const file of Array.from(input.files ?? [])) uppy.addFile({ name: file.name, type: file.type, data: file, source: 'file input' });
    });
  };
}
