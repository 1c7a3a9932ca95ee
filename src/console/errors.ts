/**
 * What the page shows of a failure: its message. A KeyframeError's is the envelope's `message`
 * (the client keeps the envelope's `error` code apart), so the page says what the API said.
 */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
