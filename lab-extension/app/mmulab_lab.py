"""Serves mmulab's JupyterLab 4 front end (dist/) on Debian's jupyterlab_server.

Run with /usr/bin/python3 (Debian's jupyter_server 1.23 and jupyterlab_server 2.16); options are
jupyter_server's, e.g. --ServerApp.root_dir=notebooks --ServerApp.ip=127.0.0.1.
The Python `jupyterlab` package is not needed: the front end is built from npm packages.
"""

import json
import os

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyterlab_server import LabServerApp
from tornado import web, websocket

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "dist")

with open(os.path.join(HERE, "package.json")) as f:
    VERSION = json.load(f)["version"]


class MeHandler(APIHandler):
    """Stand-in for /api/me (jupyter_server >= 2 has it; 1.23 does not): one anonymous user."""

    @web.authenticated
    def get(self):
        self.finish(
            json.dumps(
                {
                    "identity": {
                        "username": "mmulab",
                        "name": "mmulab",
                        "display_name": "mmulab",
                        "initials": "ML",
                        "avatar_url": None,
                        "color": None,
                    },
                    "permissions": {},
                }
            )
        )


class EventsHandler(JupyterHandler, websocket.WebSocketHandler):
    """Stand-in for the /api/events/subscribe websocket: accepts the client and sends nothing,
    so JupyterLab's event manager stops retrying. Mixes in JupyterHandler for auth (else 403)."""

    async def get(self, *args, **kwargs):
        if self.current_user is None:
            raise web.HTTPError(403)
        return await super().get(*args, **kwargs)

    def on_message(self, message):
        pass


def _jupyter_server_extension_points():
    return [{"module": __name__, "app": MmulabLabApp}]


class MmulabLabApp(LabServerApp):
    # jupyter_server finds the extension by module name; run as a script that is "__main__".
    name = __name__
    app_name = "mmulab JupyterLab"
    app_version = VERSION
    extension_url = "/lab"
    default_url = "/lab"
    load_other_extensions = False
    static_dir = BUILD
    templates_dir = os.path.join(BUILD, "templates")
    # overrides.json: a new notebook starts the default kernel (mmulab) instead of asking, with
    # the first kernelspec in alphabetical order (often Python) preselected.
    app_settings_dir = os.path.join(HERE, "settings")
    schemas_dir = os.path.join(BUILD, "schemas")
    themes_dir = os.path.join(BUILD, "themes")

    def initialize_settings(self):
        # User settings and workspaces live under the repo-local Jupyter prefix, not in the repo.
        data = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(HERE, "dist")
        self.user_settings_dir = os.path.join(data, "lab", "user-settings")
        self.workspaces_dir = os.path.join(data, "lab", "workspaces")
        super().initialize_settings()

    def initialize_handlers(self):
        self.handlers.append(("/api/me", MeHandler))
        self.handlers.append(("/api/events/subscribe", EventsHandler))
        super().initialize_handlers()


if __name__ == "__main__":
    MmulabLabApp.launch_instance()
