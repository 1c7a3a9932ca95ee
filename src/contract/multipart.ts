import { Type, type Static } from '@sinclair/typebox';

/**
 * Uppy Companion's S3 routes, as Keyframe answers them (docs/api.md, "Multipart uploads"):
 * S3's part names (PartNumber, ETag, Size) where Companion uses them, ours in snake_case.
 */

const ObjectKey = (description: string) => Type.String({ description, minLength: 1, maxLength: 1024 });

export const MultipartKeyQuery = Type.Object({ key: ObjectKey('The `key` the create answered') }, { additionalProperties: true });
export type MultipartKeyQuery = Static<typeof MultipartKeyQuery>;

export const MultipartUploadParams = Type.Object({ uploadId: Type.String({ minLength: 1, maxLength: 1024 }) });
export type MultipartUploadParams = Static<typeof MultipartUploadParams>;

export const CreateMultipartRequest = Type.Object(
  {
    type: Type.String({ description: 'MIME type of the file: the presign allow-list', maxLength: 255 }),
    filename: Type.Optional(Type.String({ description: 'Original file name; bookkeeping only (first 255 characters kept)', maxLength: 1024 })),
    metadata: Type.Optional(Type.Unknown({ description: "Uppy's metadata; ignored" })),
    size: Type.Optional(Type.Integer({ description: 'Ours: the exact size of the whole file; fixes the part plan', minimum: 1 })),
    contentLength: Type.Optional(Type.Integer({ description: 'Ours: the same as `size`', minimum: 1 })),
  },
  { additionalProperties: true },
);
export type CreateMultipartRequest = Static<typeof CreateMultipartRequest>;

export const CreateMultipartResponse = Type.Object({
  uploadId: Type.String(),
  key: Type.String({ description: 'The object key: the `s3_key` a generation names' }),
  max_bytes: Type.Integer({ description: "Ours: the family's limit, as presign answers it" }),
  part_size: Type.Optional(Type.Integer({ description: 'Ours, with a declared size: the size of every part but the last' })),
  part_count: Type.Optional(Type.Integer({ description: 'Ours, with a declared size: the number of parts' })),
});
export type CreateMultipartResponse = Static<typeof CreateMultipartResponse>;

export const PartParams = Type.Object({
  uploadId: Type.String({ minLength: 1, maxLength: 1024 }),
  partNumber: Type.String({ pattern: '^[0-9]{1,5}$', description: '1 to 10000' }),
});
export type PartParams = Static<typeof PartParams>;

/** One signed part URL (Companion's answer). */
export const SignedPart = Type.Object({
  url: Type.String({ description: 'PUT the part here' }),
  expires: Type.Integer({ description: 'Seconds the URL is valid for' }),
});
export type SignedPart = Static<typeof SignedPart>;

export const BatchPartsQuery = Type.Object(
  {
    key: ObjectKey('The `key` the create answered'),
    partNumbers: Type.String({ pattern: '^[0-9]{1,5}(,[0-9]{1,5})*$', maxLength: 6000, description: 'Comma-separated part numbers, e.g. 1,2,3' }),
  },
  { additionalProperties: true },
);
export type BatchPartsQuery = Static<typeof BatchPartsQuery>;

export const BatchPartsResponse = Type.Object({ presignedUrls: Type.Record(Type.String(), Type.String(), { description: 'Part number → URL' }) });
export type BatchPartsResponse = Static<typeof BatchPartsResponse>;

/** One part as Companion lists it (S3's ListParts names). */
export const ListedPart = Type.Object({ PartNumber: Type.Integer(), Size: Type.Integer(), ETag: Type.String() });
export type ListedPart = Static<typeof ListedPart>;

export const ListPartsResponse = Type.Array(ListedPart);

export const CompleteMultipartRequest = Type.Object(
  {
    parts: Type.Array(
      Type.Object(
        { PartNumber: Type.Integer({ minimum: 1, maximum: 10_000 }), ETag: Type.String({ minLength: 1, maxLength: 256 }) },
        { additionalProperties: true },
      ),
      { minItems: 1, maxItems: 10_000 },
    ),
  },
  { additionalProperties: true },
);
export type CompleteMultipartRequest = Static<typeof CompleteMultipartRequest>;

export const CompleteMultipartResponse = Type.Object({
  location: Type.String({ description: 'Where the upload’s state is read (relative): the status endpoint of its key' }),
  key: Type.String(),
});
export type CompleteMultipartResponse = Static<typeof CompleteMultipartResponse>;

export const AbortMultipartResponse = Type.Object({});

/** Uppy's single-PUT parameters (`GET /api/s3/params`): a presign in Companion's shape. */
export const UploadParamsQuery = Type.Object(
  {
    type: Type.String({ description: 'MIME type of the file', maxLength: 255 }),
    filename: Type.Optional(Type.String({ description: 'Original file name; bookkeeping only', maxLength: 255 })),
    size: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'Ours: exact size in bytes, signed into the URL' })),
  },
  { additionalProperties: true },
);
export type UploadParamsQuery = Static<typeof UploadParamsQuery>;

export const UploadParamsResponse = Type.Object({
  method: Type.Literal('PUT'),
  url: Type.String(),
  fields: Type.Object({}),
  headers: Type.Object({ 'content-type': Type.String() }),
  key: Type.String(),
  max_bytes: Type.Integer(),
  expires: Type.Integer(),
});
export type UploadParamsResponse = Static<typeof UploadParamsResponse>;
