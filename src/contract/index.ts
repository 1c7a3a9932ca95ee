/**
 * Keyframe's wire contract: every request and response body, as TypeBox schemas whose
 * `Static` types the domain and the client use. Routes validate and serialise with them,
 * and the OpenAPI document is generated from them, so the four cannot disagree.
 * Nothing here imports Node or the rest of the server: the browser client bundles it.
 */
export * from './errors.js';
export * from './uploads.js';
export * from './multipart.js';
export * from './generations.js';
export * from './models.js';
export * from './operations.js';
export * from './objects.js';
