// Types, references to the environment and identifiers: no literal secret here.
interface Credentials {
  password: string;
  apiKey?: string;
}

export const datadog = {
  apiKey: process.env.DD_API_KEY,
  secret: config.orderSecret,
  password: credentials.password,
};

export function login(user: string, password: string): Credentials {
  const secretName = "orders/db-password";
  return { password: password, apiKey: undefined };
}
