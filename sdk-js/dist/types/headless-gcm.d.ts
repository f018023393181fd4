export type * from './types';
export type { Ui, UiFactory, UiHost } from './core';
/** The core's `init` with the `googleConsentMode` option (options are not checked further). */
export declare const init: (o: import("./types").ConsentryOptions, mountUi?: import("./core").UiFactory) => Promise<import("./types").ConsentryInstance>;
