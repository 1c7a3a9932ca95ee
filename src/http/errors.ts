import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, ERROR_STATUS, type ErrorCode } from '../domain/errors.js';
import { StorageRefusal } from '../storage/disk/storage-refusal.js';

/** The one error envelope Prism documents: `{ error, message }`. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.code === 'rate_limited') reply.header('retry-after', '1');
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
      return reply.code(err.status).type('application/xml').header('connection', 'close').send(err.toXml());
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
    const code = (Object.keys(ERROR_STATUS) as ErrorCode[]).find((c) => ERROR_STATUS[c] === status) ?? 'validation_error';
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
      return 'Invalid or missing API key';
    case 'payload_too_large':
      return 'Request body is too large';
    case 'method_not_allowed':
      return 'Method not allowed';
    default:
      return code.replace(/_/g, ' ');
  }
}
