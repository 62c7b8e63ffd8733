// Entry of the JupyterLab 4 front end that `npm start` serves (the pattern of JupyterLab's
// examples/app): core plugins from the @jupyterlab/*-extension npm packages plus the mmulab
// renderers, bundled statically, started against the jupyter_server that serves this page.
import { JupyterLab } from "@jupyterlab/application";
import { PageConfig } from "@jupyterlab/coreutils";

// Chunks and CSS assets load relative to where the server publishes dist/.
__webpack_public_path__ = `${PageConfig.getOption("fullStaticUrl")}/`;

const styles = import("./dist/style.js");

/** Plugin ids left out: they need server endpoints jupyter_server 1.23 does not have. */
const SKIP = [":announcements", ":language-server", ":toc", ":update-raw-mimetype"];

function plugins(mod) {
  const exported = Object.hasOwn(mod, "__esModule") || mod.default ? mod.default : mod;
  const list = Array.isArray(exported) ? exported : [exported];
  return list.filter((p) => !SKIP.some((s) => p.id.includes(s)));
}

window.addEventListener("load", async () => {
  await styles;
  const extensions = await Promise.all([
    import("@jupyterlab/application-extension"),
    import("@jupyterlab/apputils-extension"),
    import("@jupyterlab/codemirror-extension"),
    import("@jupyterlab/completer-extension"),
    import("@jupyterlab/console-extension"),
    import("@jupyterlab/docmanager-extension"),
    import("@jupyterlab/documentsearch-extension"),
    import("@jupyterlab/filebrowser-extension"),
    import("@jupyterlab/fileeditor-extension"),
    import("@jupyterlab/help-extension"),
    import("@jupyterlab/launcher-extension"),
    import("@jupyterlab/mainmenu-extension"),
    import("@jupyterlab/markedparser-extension"),
    import("@jupyterlab/notebook-extension"),
    import("@jupyterlab/rendermime-extension"),
    import("@jupyterlab/running-extension"),
    import("@jupyterlab/shortcuts-extension"),
    import("@jupyterlab/statusbar-extension"),
    import("@jupyterlab/theme-light-extension"),
    import("@jupyterlab/tooltip-extension"),
    import("@jupyterlab/translation-extension"),
    import("@jupyterlab/ui-components-extension"),
  ]);
  const mimeExtensions = await Promise.all([import("@mmulab/lab-extension")]);
  const lab = new JupyterLab({ mimeExtensions: mimeExtensions.map((m) => m.default ?? m) });
  lab.registerPlugins(extensions.flatMap(plugins));
  await lab.start();
  await lab.restored;
  // A marker for tests and scripts: the shell is up and the workspace restored.
  document.body.dataset.mmulabReady = "true";
});
