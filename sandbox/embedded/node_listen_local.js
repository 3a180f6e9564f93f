// Preloaded into kinesis-mock (`node --require`), which listens on 0.0.0.0 whatever it is
// told: every server of the process listens on 127.0.0.1 instead, so the sandbox stays on
// this machine. A server given another, specific host keeps it.
"use strict";
const net = require("net");

const LOCAL = "127.0.0.1";
const WILDCARDS = new Set([undefined, null, "", "0.0.0.0", "::"]);
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const [first, second] = args;
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && first.fd === undefined && first.handle === undefined) {
      if (WILDCARDS.has(first.host)) args[0] = { ...first, host: LOCAL };
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof second === "string" || second === null || second === undefined) {
      if (WILDCARDS.has(second)) args[1] = LOCAL;
    } else {
      args.splice(1, 0, LOCAL); // listen(port, backlog or callback)
    }
  }
  return listen.apply(this, args);
};
