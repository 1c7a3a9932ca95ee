/** Who is calling: the live API key a request authenticated with, and its user and scopes. */
export interface Principal {
  keyId: string;
  userId: string;
  scopes: readonly string[];
}
