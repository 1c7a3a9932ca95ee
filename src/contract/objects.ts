import { Type, type Static } from '@sinclair/typebox';

/**
 * The disk store's S3-style endpoint (upload and download URLs), as S3 answers: for the OpenAPI
 * document only. The store checks these requests itself (src/storage/disk), no schema does.
 */

/** S3's error body, in XML: `<Error><Code>…</Code><Message>…</Message></Error>`. */
export const S3Error = Type.Object(
  {
    Code: Type.String({ description: 'S3’s code: SignatureDoesNotMatch, AccessDenied, EntityTooLarge, NoSuchKey, …', example: 'SignatureDoesNotMatch' }),
    Message: Type.String(),
  },
  { $id: 'S3Error', xml: { name: 'Error' }, description: 'S3’s error, as XML' },
);
export type S3Error = Static<typeof S3Error>;

export const ObjectParams = Type.Object({ '*': Type.String({ description: 'The object key (the `s3_key`)' }) });

/** The SigV4 query of a presigned URL, and for a part of a multipart upload its number and upload id. */
export const SignedUrlQuery = Type.Object(
  {
    'X-Amz-Algorithm': Type.Literal('AWS4-HMAC-SHA256'),
    'X-Amz-Credential': Type.String(),
    'X-Amz-Date': Type.String(),
    'X-Amz-Expires': Type.String(),
    'X-Amz-SignedHeaders': Type.String(),
    'X-Amz-Signature': Type.String(),
    partNumber: Type.Optional(Type.String({ description: 'Of a part URL only' })),
    uploadId: Type.Optional(Type.String({ description: 'Of a part URL only' })),
  },
  { additionalProperties: true },
);
