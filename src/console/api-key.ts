/**
 * The API key the console calls with: in this tab's sessionStorage only, so it goes when the tab
 * closes, is never written to disk by a "remember me", and no other tab or page of the origin
 * that does not share the session sees it.
 */
const STORAGE_KEY = 'keyframe.console.apiKey';

export function storedApiKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function storeApiKey(key: string): void {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetApiKey(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** What the page shows of a key: its prefix and last four characters. */
export function maskedKey(key: string): string {
  return key.length <= 12 ? '…' : `${key.slice(0, 9)}…${key.slice(-4)}`;
}
