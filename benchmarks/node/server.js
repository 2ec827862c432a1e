// Express apps for the coatcheck benchmarks. Mode (argv[2]):
//   bare             express, no middleware (baseline, /plain only)
//   express-session  express-session + connect-redis (node-redis client), documented defaults
//   cookie-session   cookie-session (signed cookie)
// Environment: PORT, BENCH_REDIS_URL, BENCH_SECRET.
"use strict";

const express = require("express");

const mode = process.argv[2] || "bare";
const port = Number(process.env.PORT || 3000);
const secret = process.env.BENCH_SECRET;

async function sessionMiddleware() {
  if (mode === "express-session") {
    const session = require("express-session");
    const { RedisStore } = require("connect-redis");
    const { createClient } = require("redis");
    const client = createClient({ url: process.env.BENCH_REDIS_URL });
    await client.connect();
    return session({
      store: new RedisStore({ client }),
      secret,
      resave: false,
      saveUninitialized: false,
    });
  }
  if (mode === "cookie-session") {
    const cookieSession = require("cookie-session");
    return cookieSession({ name: "session", keys: [secret] });
  }
  return null;
}

async function main() {
  const app = express();
  app.set("etag", false);
  app.set("x-powered-by", false);
  // Like the Python cases, the middleware wraps every route, /plain included.
  const mw = await sessionMiddleware();
  if (mw) app.use(mw);
  app.get("/plain", (req, res) => res.type("text").send("ok"));
  if (mw) {
    app.get("/read", (req, res) => {
      res.type("text").send(String(req.session.n || 0));
    });
    app.get("/incr", (req, res) => {
      req.session.n = (req.session.n || 0) + 1;
      res.type("text").send(String(req.session.n));
    });
    app.get("/first", (req, res) => {
      req.session.user = "bench";
      res.type("text").send("ok");
    });
  }
  app.listen(port, "127.0.0.1");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
