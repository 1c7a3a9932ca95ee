import { Type } from '@sinclair/typebox';

/** The error envelope, for the OpenAPI document. */
export const ErrorSchema = Type.Object(
  { error: Type.String({ description: 'error code' }), message: Type.String() },
  { $id: 'Error', description: 'Every error, documented or ours' },
);

export const errorResponses = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  500: ErrorSchema,
};
