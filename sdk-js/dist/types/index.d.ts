import type { ConsentryInstance, ConsentryOptions } from './types';
export type * from './types';
export type { Ui, UiFactory, UiHost } from './core';
/**
 * Starts Consentry with the default UI, or headless with `ui: false`.
 * See the core's `init` for the sequence; resolves once `ready` fired.
 */
export declare function init(options: ConsentryOptions): Promise<ConsentryInstance>;
