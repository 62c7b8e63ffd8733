// Builds the JupyterLab front end into dist/: rspack bundles index.js, and @jupyter/builder's
// Build.ensureAssets copies each extension's settings schemas and theme files and writes
// dist/style.js (the CSS imports of every package).
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { rspack } = require("@rspack/core");
const { Build } = require("@jupyter/builder");
const miniSVGDataURI = require("mini-svg-data-uri");
const pkg = require("./package.json");

const packageNames = Object.keys(pkg.dependencies).filter(
  (n) => n.endsWith("-extension") || n === "@mmulab/lab-extension",
);
const assets = Build.ensureAssets({ packageNames, output: `${here}/dist` });

// @microsoft/fast-foundation 2.50.0 loops in its design-token store (RangeError: maximum call
// stack size, logged dozens of times at startup). This workspace pins 2.49.4; the alias makes
// every importer (@jupyter/web-components among them) use that copy, whichever one npm hoisted.
const fastFoundation = dirname(require.resolve("@microsoft/fast-foundation/package.json"));

const config = {
  context: here,
  resolve: { alias: { "@microsoft/fast-foundation": fastFoundation } },
  entry: ["./index.js"],
  output: {
    path: `${here}/dist`,
    filename: "bundle.js",
    chunkFilename: "[name].[contenthash:8].js",
  },
  bail: true,
  devtool: false,
  mode: "development",
  module: {
    rules: [
      // @jupyter/web-components ships ESM with extension-less imports.
      { test: /\.m?js$/, resolve: { fullySpecified: false } },
      {
        test: /\.css$/,
        exclude: /\.raw\.css$/,
        type: "javascript/auto",
        use: [rspack.CssExtractRspackPlugin.loader, "css-loader"],
      },
      { test: /\.raw\.css$/, type: "asset/source" },
      { test: /\.html$/, type: "asset/resource" },
      { test: /\.md$/, type: "asset/source" },
      { test: /\.(jpg|png|gif)$/, type: "asset/resource" },
      { test: /\.js\.map$/, type: "asset/resource" },
      { test: /\.(woff2?|ttf)(\?v=\d+\.\d+\.\d+)?$/, type: "asset" },
      { test: /\.eot(\?v=\d+\.\d+\.\d+)?$/, type: "asset/resource" },
      {
        test: /\.svg(\?v=\d+\.\d+\.\d+)?$/,
        issuer: /\.css$/,
        type: "asset/inline",
        generator: {
          dataUrl: {
            content: (c) => miniSVGDataURI(c.content.toString()),
            mimetype: "image/svg+xml",
          },
        },
      },
      { test: /\.svg(\?v=\d+\.\d+\.\d+)?$/, issuer: /\.js$/, type: "asset/source" },
    ],
  },
  plugins: [
    new rspack.DefinePlugin({ process: { cwd: () => "/", env: {} } }),
    new rspack.CssExtractRspackPlugin({ filename: "[name].[contenthash:8].css" }),
  ],
  performance: { hints: false },
  infrastructureLogging: { level: "warn" },
};

// The page jupyterlab_server renders (a Jinja template). Written here rather than kept as an
// .html file so HTML linters never parse Jinja syntax.
const TEMPLATE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{page_config['appName'] | e}}</title>
</head>
<body>
  {# page_config is copied so the template adds base and websocket URLs without changing it. #}
  {% set page_config_full = page_config.copy() %}
  {% set _ = page_config_full.update(baseUrl=base_url, wsUrl=ws_url) %}
  <script id="jupyter-config-data" type="application/json">{{ page_config_full | tojson }}</script>
  <script src="{{page_config['fullStaticUrl'] | e}}/bundle.js"></script>
  <script>
    // Drop the token from the address bar once the page has it (it is kept in a cookie).
    (function () {
      var url = new URL(window.location.href);
      if (url.searchParams.get("token")) {
        url.searchParams.delete("token");
        window.history.replaceState({}, "", url.href);
      }
    })();
  </script>
</body>
</html>
`;
mkdirSync(`${here}/dist/templates`, { recursive: true });
writeFileSync(`${here}/dist/templates/index.html`, TEMPLATE);

const t0 = Date.now();
rspack([config, ...[].concat(assets)], (err, stats) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  if (stats.hasErrors()) {
    console.error(stats.toString({ all: false, errors: true }));
    process.exit(1);
  }
  console.log(`lab app built into ${here}/dist in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
