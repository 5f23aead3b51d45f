import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { CellBadges } from './badges';
import { NotebookSteps } from './notebook';
import { CellopsPanel, IPanelSettings } from './panel';
import { intervalFromSetting } from './schedule';

const PLUGIN_ID = 'cellops-lab:plugin';

export namespace CommandIDs {
  export const runAsJob = 'cellops:run-as-job';
  export const showSteps = 'cellops:show-steps';
}

const cellopsIcon = new LabIcon({
  name: 'cellops-lab:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<g class="jp-icon3" fill="#616161"><rect x="1" y="2" width="6" height="5" rx="1"/>' +
    '<rect x="9" y="9" width="6" height="5" rx="1"/>' +
    '<path d="M4 8v3.5h4v-1H5V8z"/><path d="M12 8V4.5H8v1h3V8z"/></g></svg>'
});

const jobIcon = new LabIcon({
  name: 'cellops-lab:job',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<g class="jp-icon3" fill="#616161"><path d="M2 3h8v1.5H2zM2 7h6v1.5H2zM2 11h5v1.5H2z"/>' +
    '<path d="M10 7.5l5 3.5-5 3.5z"/></g></svg>'
});

function readSettings(settings: ISettingRegistry.ISettings | null): IPanelSettings {
  const composite = settings ? settings.composite : {};
  const url = composite['mlflowUiUrl'];
  return {
    intervalMs: intervalFromSetting(composite['pollInterval']),
    uiUrl: typeof url === 'string' ? url : ''
  };
}

/**
 * cellops in JupyterLab: a side panel for the active notebook and badges on its `%%step`
 * cells, over the cellops_lab server extension.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'cellops: the notebook steps, models, drift and jobs beside the notebook',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null
  ) => {
    const serverSettings = app.serviceManager.serverSettings;
    const panel = new CellopsPanel(serverSettings, readSettings(null));
    panel.title.icon = cellopsIcon;
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'cellops-panel');

    const sources = new Map<NotebookPanel, NotebookSteps>();
    const follow = (notebook: NotebookPanel | null) =>
      panel.setNotebook(notebook ? (sources.get(notebook) ?? null) : null);

    tracker.widgetAdded.connect((_, notebook) => {
      const steps = new NotebookSteps(notebook, serverSettings);
      const badges = new CellBadges(notebook, steps);
      sources.set(notebook, steps);
      notebook.disposed.connect(() => {
        sources.delete(notebook);
        badges.dispose();
        steps.dispose();
        if (tracker.currentWidget === null) {
          follow(null);
        }
      });
      if (tracker.currentWidget === notebook) {
        follow(notebook);
      }
    });
    tracker.currentChanged.connect((_, notebook) => follow(notebook));

    // a cell finished (its execute_reply came): its badge and the panel follow at once
    NotebookActions.executed.connect((_, { notebook }) => {
      for (const [widget, steps] of sources) {
        if (widget.content === notebook) {
          steps.cellExecuted();
        }
      }
    });

    const current = () => tracker.currentWidget;
    const showPanel = () => {
      if (labShell && labShell.rightCollapsed) {
        labShell.expandRight();
      }
      app.shell.activateById(panel.id);
    };
    app.commands.addCommand(CommandIDs.showSteps, {
      label: 'cellops: show steps',
      caption: "Show the cellops panel: this notebook's steps, models, drift and jobs",
      icon: args => (args['isPalette'] ? undefined : cellopsIcon),
      execute: () => {
        showPanel();
        return panel.refresh().catch(() => undefined);
      }
    });
    app.commands.addCommand(CommandIDs.runAsJob, {
      label: 'cellops: run notebook as job',
      caption: 'Run this notebook as a cellops job (cellops run) with the parameters you give',
      icon: args => (args['isPalette'] ? undefined : jobIcon),
      isEnabled: () => current() !== null,
      execute: async () => {
        const notebook = current();
        if (notebook && notebook.context.model.dirty) {
          await notebook.context.save(); // the job runs the file, as `cellops run` does
        }
        showPanel();
        panel.focusJobForm();
      }
    });
    if (palette) {
      for (const command of [CommandIDs.showSteps, CommandIDs.runAsJob]) {
        palette.addItem({ command, category: 'cellops', args: { isPalette: true } });
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          panel.configure(readSettings(settings));
          settings.changed.connect(() => panel.configure(readSettings(settings)));
        })
        .catch(reason => console.error('cellops: could not load its settings', reason));
    }
  }
};

export default plugin;
