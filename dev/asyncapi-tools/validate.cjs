// Validates an AsyncAPI document with the official parser (@asyncapi/parser, pinned in package-lock.json) and prints
// every diagnostic. Exit 1 on any error or warning: the checked-in document is generated, so it has no excuse.
// Usage: node validate.cjs <directory holding node_modules> <document>
"use strict";
const path = require("path");

async function main() {
  const [modules, file] = process.argv.slice(2);
  if (!modules || !file) {
    console.error("usage: node validate.cjs <directory holding node_modules> <document>");
    return 2;
  }
  const { Parser, fromFile } = require(require.resolve("@asyncapi/parser", { paths: [path.resolve(modules)] }));
  const { version } = require(require.resolve("@asyncapi/parser/package.json", { paths: [path.resolve(modules)] }));
  const { document, diagnostics } = await fromFile(new Parser(), path.resolve(file)).parse();
  const severities = ["error", "warning", "information", "hint"];
  for (const d of diagnostics) {
    const where = d.path.join(".") || "(document)";
    console.error(`${file}: ${severities[d.severity] ?? d.severity}: ${where}: ${d.message} [${d.code}]`);
  }
  const serious = diagnostics.filter((d) => d.severity <= 1).length;
  if (!document || serious > 0) {
    console.error(`${file}: not valid AsyncAPI (${serious} error(s)/warning(s), @asyncapi/parser ${version})`);
    return 1;
  }
  console.log(`${file}: valid AsyncAPI ${document.version()} (@asyncapi/parser ${version})`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
