// Removes Leptos's async hydration from a bundle: the functions of it that nothing else
// calls get the body `unreachable`, and wasm-opt, run next, drops them and what only they
// called.
//
// Why: Confab hydrates synchronously (`leptos::mount::hydrate_body`) and has no lazy routes
// or islands, so async hydration is never entered. The linker cannot see that: every
// type-erased view (`AnyView`, of which `--cfg erase_components` makes many) stores a
// pointer to its own async hydration, and every reactive part of a view boxes an effect for
// it, whether or not anything calls them. That code was 58 KB of the optimized readers'
// WASM before compression.
//
// Which functions: those named `…hydrate_async…` (names come from the name section, which
// wasm-bindgen keeps), less any that code outside async hydration calls directly (rustc
// merges identical functions and keeps one name: the element's synchronous hydration calls
// a helper named after `hydrate_async`), less any that the function table holds unless they
// are the pointers named above (`POINTED_TO`), which are async hydration's own entry points.
//
// If async hydration is ever used (`hydrate_lazy`, `#[lazy_route]`, islands), the page stops
// with "unreachable" in the console at once, and every browser test that loads a page fails:
// `make test-release-wasm` runs this WASM.
//
// Usage: node frontend/drop-async-hydration.mjs <in.wasm> <out.wasm>
// Needs binaryen (JS build and wasm-opt), which the Makefile installs into target/tools.

import { execFileSync } from "node:child_process";
import fs from "node:fs";

const tools = new URL("../target/tools/node_modules/", import.meta.url);
const binaryen = (await import(new URL("binaryen/index.js", tools))).default;
const wasmOpt = new URL(".bin/wasm-opt", tools).pathname;

// Async hydration's entry points, reached only through pointers: `AnyView`'s, and the boxed
// effect and future of a reactive view's async hydration.
const POINTED_TO = [
    "<T as tachys::view::any_view::IntoAny>::into_any::hydrate_async::",
    "tachys::reactive_graph::<impl tachys::view::RenderHtml for F>::hydrate_async::",
];

const [input, output] = process.argv.slice(2);
if (!input || !output) {
    console.error("usage: node frontend/drop-async-hydration.mjs <in.wasm> <out.wasm>");
    process.exit(2);
}

/** Direct calls, as callee → callers, from wasm-opt's call graph. */
function callersOf(wasm) {
    const graph = execFileSync(wasmOpt, ["--print-call-graph", wasm, "-o", "/dev/null"], {
        encoding: "utf8",
        maxBuffer: 256 * 1024 * 1024,
    });
    const callers = new Map();
    for (const [, caller, callee] of graph.matchAll(/^\s*"(.*)" -> "(.*)"; \/\/ call$/gm)) {
        if (!callers.has(callee)) callers.set(callee, new Set());
        callers.get(callee).add(caller);
    }
    return callers;
}

// The features the bundle uses are read from its target_features section, as wasm-opt does.
const module = binaryen.readBinary(fs.readFileSync(input));
const functions = new Map();
for (let i = 0; i < module.getNumFunctions(); i++) {
    const func = module.getFunctionByIndex(i);
    const info = binaryen.getFunctionInfo(func);
    // Imports have no body.
    if (info.body) functions.set(info.name, func);
}
const inTable = new Set();
for (let i = 0; i < module.getNumElementSegments(); i++) {
    for (const name of binaryen.getElementSegmentInfo(module.getElementSegmentByIndex(i)).data) {
        inTable.add(name);
    }
}

const drop = new Set(
    [...functions.keys()].filter(
        (name) =>
            name.includes("hydrate_async") &&
            (!inTable.has(name) || POINTED_TO.some((prefix) => name.startsWith(prefix))),
    ),
);
const callers = callersOf(input);
for (let changed = true; changed; ) {
    changed = false;
    for (const name of drop) {
        if ([...(callers.get(name) ?? [])].some((caller) => !drop.has(caller))) {
            drop.delete(name);
            changed = true;
        }
    }
}

// None found: the names changed (a Leptos upgrade, or a bundle without its name section),
// and the size this step saves would quietly be lost.
if (!POINTED_TO.every((prefix) => [...drop].some((name) => name.startsWith(prefix)))) {
    console.error(`${input}: async hydration's entry points not found (${POINTED_TO.join(", ")})`);
    process.exit(1);
}
for (const name of drop) binaryen.Function.setBody(functions.get(name), module.unreachable());
if (!module.validate()) {
    console.error(`${input}: not valid after dropping async hydration`);
    process.exit(1);
}
fs.writeFileSync(output, module.emitBinary());
console.log(`${input}: dropped ${drop.size} async hydration functions`);
