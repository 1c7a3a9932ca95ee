// The page's script for Uppy 6, bundled by the test with esbuild from test/browser/uppy6/node_modules.
// Uppy with its defaults (multipart above 100 MB), on Keyframe's routes through the options
// Keyframe ships for Uppy 6 (src/client/uppy.ts): its companionEndpoint sends no Authorization header.
import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';
import { keyframeUppyOptions } from '../../../src/client/uppy.js';
import { exposeUppy } from './common.js';

exposeUppy((endpoint, apiKey) => {
  const uppy = new Uppy({ autoProceed: true });
  uppy.use(AwsS3, keyframeUppyOptions({ endpoint, apiKey }));
  return uppy;
});
