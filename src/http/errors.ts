import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, codeForStatus, ERROR_STATUS, INVALID_API_KEY, type ErrorCode } from '../domain/errors.js';
import { StorageRefusal } from '../storage/disk/storage-refusal.js';

/** The one error envelope Prism documents: `{ error, message }`. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.code === 'rate_limited') reply.header('retry-after', String(error.retryAfterSeconds ?? 1));
  return reply.code(error.status).type('application/json; charset=utf-8').send({ error: error.code, message: error.message } satisfies ErrorBody);
}

/**
 * Maps every error to the envelope once: domain ApiErrors as they are,
 * Fastify's own (validation, body parsing, size) to their codes, and anything
 * else to a 500 whose message reveals nothing (the details go to the log).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof StorageRefusal) {
      // A body refused before it was read is left to Node, which discards it and keeps the
      // connection: closing with unread bytes would reset the socket, and a client still
      // sending would see the reset instead of this answer. A body read halfway cannot be
      // resumed, and a client waiting on 100-continue has sent nothing: those connections close.
      const raw = request.raw;
      if (raw.readableDidRead || raw.destroyed || /100-continue/i.test(request.headers.expect ?? '')) {
        reply.header('connection', 'close');
      }
      return reply.code(err.status).type('application/xml').send(err.toXml());
    }
    const apiError = toApiError(err);
    if (apiError.code === 'server_error') request.log.error({ err }, 'request failed');
    return sendError(reply, apiError);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError('not_found', `No route for ${request.method} ${request.url.split('?', 1)[0]}`)),
  );
}

function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err;
  if (err.validation) return new ApiError('validation_error', validationMessage(err));
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('payload_too_large', 'Request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('validation_error', 'Request body must be JSON (Content-Type: application/json)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('validation_error', 'Request body must not be empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('validation_error', 'Request body is not valid JSON');
  }
  // Fastify's own 4xx (malformed JSON, bad headers, ...) are the client's mistakes.
  const status = err.statusCode ?? 500;
  if (status === 400 && err instanceof SyntaxError) return new ApiError('validation_error', 'Request body is not valid JSON');
  if (status >= 400 && status < 500) {
    const code = codeForStatus(status) ?? 'validation_error';
    return new ApiError(code, code === 'validation_error' ? 'Invalid request' : defaultMessage(code));
  }
  return new ApiError('server_error', 'Internal server error');
}

function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0];
  if (!first) return 'Invalid request';
  const where = err.validationContext ?? 'body';
  const field = first.instancePath ? first.instancePath.slice(1).replace(/\//g, '.') : (first.params as { missingProperty?: string }).missingProperty;
  if (first.keyword === 'required') return `${where}.${field} is required`;
  if (first.keyword === 'type' && !first.instancePath) return `${where} must be a JSON object`;
  return `${where}${field ? `.${field}` : ''} ${first.message ?? 'is invalid'}`;
}

function defaultMessage(code: ErrorCode): string {
  switch (code) {
    case 'unauthorized':
      return INVALID_API_KEY;
    case 'payload_too_large':
      return 'Request body is too large';
    case 'method_not_allowed':
      return 'Method not allowed';
    default:
      return code.replace(/_/g, ' ');
  }
}

/**
 * Errors Fastify answers before routing, bypassing the error handler (a URL that
 * does not decode, a path parameter over maxParamLength). Passed to Fastify as
 * its `frameworkErrors` option, they get the envelope too.
 */
export function frameworkErrorHandler(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const error =
    err.code === 'FST_ERR_ASYNC_CONSTRAINT'
      ? new ApiError('server_error', 'Internal server error')
      : new ApiError('validation_error', err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'Request path is too long' : 'Request URL is malformed');
  void sendError(reply, error);
}

/**
 * Broken HTTP (a malformed request line or header, a bad chunk, headers over
 * Node's limit) never reaches Fastify's routing. Passed to Fastify as its
 * `clientErrorHandler` option, this answers it in the envelope, with the status
 * Fastify's default would use when the catalogue has a code for it.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [wanted, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request timed out']
        : [400, 'Malformed HTTP request'];
  const code = codeForStatus(wanted) ?? 'validation_error';
  const status = ERROR_STATUS[code];
  const body = JSON.stringify({ error: code, message } satisfies ErrorBody);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
