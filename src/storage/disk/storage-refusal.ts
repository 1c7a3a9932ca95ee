/**
 * A refusal of the disk store's S3-style endpoint, answered the way S3 answers:
 * an XML <Error> body with S3's code names, so S3 clients report it sensibly.
 */
export class StorageRefusal extends Error {
  constructor(
    readonly status: number,
    readonly s3Code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StorageRefusal';
  }

  static signatureMismatch() {
    return new StorageRefusal(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  }
  static accessDenied() {
    return new StorageRefusal(403, 'AccessDenied', 'Access Denied');
  }
  static expired() {
    return new StorageRefusal(403, 'AccessDenied', 'Request has expired');
  }
  static tooLarge(maxBytes: number) {
    return new StorageRefusal(413, 'EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${maxBytes} bytes`);
  }
  static incompleteBody() {
    return new StorageRefusal(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header');
  }
  static noSuchKey() {
    return new StorageRefusal(404, 'NoSuchKey', 'The specified key does not exist.');
  }
  /** A second PUT of an upload URL whose object has arrived (with other bytes), or of a key the server deleted. */
  static alreadyWritten() {
    return new StorageRefusal(403, 'AccessDenied', 'This upload URL was already used; the stored object cannot be replaced');
  }
  /** A PUT to a key another request is writing right now (S3's answer to racing writes). */
  static conflictingOperation() {
    return new StorageRefusal(409, 'OperationAborted', 'A conflicting conditional operation is currently in progress against this resource. Please try again.');
  }
  /** Too many uploads in progress for the user or the server. */
  static slowDown() {
    return new StorageRefusal(503, 'SlowDown', 'Please reduce your request rate.');
  }
  /** A part PUT for a multipart upload that does not exist (never started, completed or aborted). */
  static noSuchUpload() {
    return new StorageRefusal(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.');
  }
  static methodNotAllowed() {
    return new StorageRefusal(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
  }

  toXml(): string {
    return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${this.s3Code}</Code><Message>${this.message}</Message></Error>`;
  }
}
