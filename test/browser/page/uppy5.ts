// The page's script for Uppy 5, bundled by the test with esbuild from test/browser/uppy5/node_modules.
// Uppy with its defaults (multipart above 100 MB), on Keyframe's Companion-compatible routes as
// docs/api.md shows them: `endpoint` and the Bearer key in `headers`.
import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';
import { exposeUppy } from './common.js';

exposeUppy((endpoint, apiKey) => {
  const uppy = new Uppy({ autoProceed: true });
  uppy.use(AwsS3, { endpoint, headers: { authorization: `Bearer ${apiKey}` } });
  return uppy;
});
