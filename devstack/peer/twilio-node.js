// The peer in `make bench`: twilio-node, Twilio's official helper, timed on the inputs the Rust
// benchmark wrote (`target/bench/peer-inputs.json`): `validateRequest` on the status callback,
// `VoiceResponse` building the forward and menu documents again. `devstack bench` installs the
// pinned twilio package into a temporary folder and runs this there; it prints one JSON line.
'use strict';

const fs = require('fs');
const twilio = require('twilio');

const inputs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

// Median time per call in ns: warm up (the JIT), then 25 samples of enough calls to take
// about 40 ms each.
function time(fn) {
  const until = Date.now() + 1000;
  while (Date.now() < until) fn();
  let n = 1;
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    if (Number(process.hrtime.bigint() - start) > 40e6) break;
    n *= 2;
  }
  const samples = [];
  for (let s = 0; s < 25; s++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    samples.push(Number(process.hrtime.bigint() - start) / n);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

// Builds an element's children with the VoiceResponse methods named after them
// (`Say` -> say(attributes, text), `Dial` -> dial(attributes) then its nouns).
function build(parent, element) {
  for (const child of element.children) {
    const method = child.name[0].toLowerCase() + child.name.slice(1);
    const attributes = Object.fromEntries(child.attributes);
    if (child.children.length > 0) {
      build(parent[method](attributes), child);
    } else if (child.text !== '') {
      parent[method](attributes, child.text);
    } else {
      parent[method](attributes);
    }
  }
}

function render(document) {
  const response = new twilio.twiml.VoiceResponse();
  build(response, document.tree);
  return response.toString();
}

const { auth_token: token, url, params, signature } = inputs;
const result = {
  twilio: require('twilio/package.json').version,
  node: process.version,
  signature_valid: twilio.validateRequest(token, signature, url, params),
  signature_check_ns: time(() => twilio.validateRequest(token, signature, url, params)),
};
for (const [id, document] of Object.entries(inputs.twiml)) {
  result[`${id}_same_document`] = render(document) === document.xml;
  result[`${id}_ns`] = time(() => render(document));
}
console.log(JSON.stringify(result));
