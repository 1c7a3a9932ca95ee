import { Type, type Static } from '@sinclair/typebox';

/**
 * The error envelope: every refusal, Prism's documented ones and Keyframe's own, is
 * `{ error, message }`. The codes are the catalogue in src/domain/errors.ts.
 */
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'Machine-readable code, e.g. validation_error, unauthorized, not_found, rate_limited' }),
    message: Type.String({ description: 'What went wrong, for a person' }),
  },
  { $id: 'Error', description: 'Every error, documented or ours' },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** The refusals every authenticated endpoint may answer. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  500: ErrorBody,
};
