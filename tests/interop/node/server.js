// The Express app the coatcheck interop tests share sessions with (tests/test_express_interop.py).
//
// express-session with connect-redis (STORE=redis, the default) or connect-mongo (STORE=mongo),
// configured as the coatcheck side is in the tests, plus cookie-session mounted under /cs.
// Environment:
//   PORT             port to listen on (127.0.0.1 only)
//   SECRET           the secret both sides share (express-session's secret, cookie-session's key)
//   STORE            "redis" (default) or "mongo"
//   REDIS_URL        connect-redis's Redis          PREFIX      connect-redis's key prefix ("sess:")
//   TTL              the store ttl in seconds (connect-redis default 86400, connect-mongo 1209600)
//   MONGODB_URL      connect-mongo's server         MONGO_DB / MONGO_COLLECTION   where sessions live
//   MONGO_STRINGIFY  "0" for connect-mongo's stringify: false
"use strict";

const express = require("express");
const session = require("express-session");
const cookieSession = require("cookie-session");

const port = Number(process.env.PORT);
const secret = process.env.SECRET;
if (!port || !secret) {
  console.error("PORT and SECRET are required");
  process.exit(2);
}
const ttl = process.env.TTL ? Number(process.env.TTL) : undefined;

async function makeStore() {
  if ((process.env.STORE || "redis") === "mongo") {
    const { MongoStore } = require("connect-mongo");
    return MongoStore.create({
      mongoUrl: process.env.MONGODB_URL,
      dbName: process.env.MONGO_DB,
      collectionName: process.env.MONGO_COLLECTION || "sessions",
      stringify: process.env.MONGO_STRINGIFY !== "0",
      ...(ttl ? { ttl } : {}),
    });
  }
  const { RedisStore } = require("connect-redis");
  const { createClient } = require("redis");
  const client = createClient({ url: process.env.REDIS_URL });
  client.on("error", (err) => console.error("redis:", err.message));
  await client.connect();
  return new RedisStore({ client, prefix: process.env.PREFIX || "sess:", ...(ttl ? { ttl } : {}) });
}

// What the tests read back: the session as express-session holds it (cookie included).
function view(req) {
  const user = req.session && req.session.passport ? req.session.passport.user : null;
  return { user, id: req.sessionID, session: req.session ? JSON.parse(JSON.stringify(req.session)) : null };
}

function done(res, req) {
  return (err) => (err ? res.status(500).json({ error: String(err) }) : res.json(view(req)));
}

async function main() {
  const store = await makeStore();
  const sessions = session({
    store,
    secret,
    resave: false,
    saveUninitialized: false,
  });
  const app = express();
  app.set("etag", false);
  app.use(express.json());

  // cookie-session, on its own paths and cookie ("session" + "session.sig").
  const cookies = express.Router();
  cookies.use(cookieSession({ name: "session", keys: [secret] }));
  cookies.get("/", (req, res) => res.json(req.session));
  cookies.post("/put", (req, res) => {
    Object.assign(req.session, req.body);
    res.json(req.session);
  });
  app.use("/cs", cookies);

  // express-session everywhere else.
  app.use((req, res, next) => (req.path.startsWith("/cs/") ? next() : sessions(req, res, next)));
  app.get("/health", (req, res) => res.send("ok"));
  app.get("/me", (req, res) => res.json(view(req)));
  // passport.js 0.6's login: a new session id, then passport.user in the session.
  app.post("/login", (req, res) => {
    req.session.regenerate((err) => {
      if (err) return res.status(500).json({ error: String(err) });
      req.session.passport = { user: req.body.user };
      if (req.body.maxAge !== undefined) req.session.cookie.maxAge = req.body.maxAge;
      req.session.save(done(res, req));
    });
  });
  app.post("/set", (req, res) => {
    Object.assign(req.session, req.body);
    res.json(view(req));
  });
  app.post("/unset", (req, res) => {
    for (const key of req.body.keys) delete req.session[key];
    res.json(view(req));
  });
  app.post("/append", (req, res) => {
    // read-modify-write of a list, as an app would (the whole object is saved)
    const list = req.session[req.body.key] || [];
    list.push(req.body.value);
    req.session[req.body.key] = list;
    res.json(view(req));
  });
  app.post("/regenerate", (req, res) => {
    req.session.regenerate((err) => {
      if (err) return res.status(500).json({ error: String(err) });
      Object.assign(req.session, req.body);
      req.session.save(done(res, req));
    });
  });
  app.post("/destroy", (req, res) => {
    req.session.destroy((err) => (err ? res.status(500).json({ error: String(err) }) : res.json({ destroyed: true })));
  });
  app.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
