// A Firestore client as a browser would be one: the Firebase JS SDK the web UI ships
// (frontend/node_modules/firebase), signed in through the Auth emulator, or not signed in at all.
// It tries every kind of read and write on the documents it is given and prints, as JSON, the
// error code each attempt got ("ok" when one succeeded). Used by test_firestore_rules.py.
"use strict";

const path = require("node:path");

const config = JSON.parse(process.argv[2]);
const sdk = (name) => require(require.resolve(name, { paths: [config.sdkRoot] }));
const { initializeApp } = sdk("firebase/app");
const { connectAuthEmulator, getAuth, signInWithEmailAndPassword } = sdk("firebase/auth");
const fs = sdk("firebase/firestore/lite");

async function outcome(attempt) {
  try {
    await attempt();
    return "ok";
  } catch (error) {
    return error.code || String(error);
  }
}

async function attempts(db, uid) {
  const owned = fs.doc(db, config.document);
  const collection = fs.collection(db, path.posix.dirname(config.document));
  return {
    get: await outcome(() => fs.getDoc(owned)),
    list: await outcome(() => fs.getDocs(collection)),
    query_own: await outcome(() => fs.getDocs(fs.query(collection, fs.where("owner", "==", uid ?? "")))),
    collection_group: await outcome(() => fs.getDocs(fs.collectionGroup(db, "events"))),
    create: await outcome(() => fs.setDoc(fs.doc(collection, `client-made-${Date.now()}`), { owner: uid ?? "" })),
    add: await outcome(() => fs.addDoc(collection, { owner: uid ?? "" })),
    set: await outcome(() => fs.setDoc(owned, { owner: uid ?? "", status: "ready" })),
    update: await outcome(() => fs.updateDoc(owned, { status: "ready" })),
    delete: await outcome(() => fs.deleteDoc(owned)),
    batch: await outcome(() => fs.writeBatch(db).update(owned, { status: "ready" }).commit()),
    transaction: await outcome(() =>
      fs.runTransaction(db, async (tx) => {
        await tx.get(owned);
        tx.update(owned, { status: "ready" });
      }),
    ),
  };
}

async function main() {
  const [host, port] = config.firestoreHost.split(":");
  const results = {};
  for (const signedIn of [true, false]) {
    const app = initializeApp({ apiKey: "fake-api-key", projectId: config.projectId }, signedIn ? "user" : "anonymous");
    let uid = null;
    if (signedIn) {
      const auth = getAuth(app);
      connectAuthEmulator(auth, `http://${config.authHost}`, { disableWarnings: true });
      uid = (await signInWithEmailAndPassword(auth, config.email, config.password)).user.uid;
    }
    const db = fs.getFirestore(app);
    fs.connectFirestoreEmulator(db, host, Number(port));
    results[signedIn ? "signed_in" : "anonymous"] = { uid, ...(await attempts(db, uid)) };
  }
  process.stdout.write(JSON.stringify(results));
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
  },
);
