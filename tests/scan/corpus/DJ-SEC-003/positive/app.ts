// A literal password and a literal key in TypeScript.
const dbPassword = "p7Kx-22Lm-vQ9"; // # expect: DJ-SEC-003@medium

export const options = {
  user: "orders",
  password: "Zk3#Lm8qW2", // # expect: DJ-SEC-003@medium
};
