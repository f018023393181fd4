// Types of window.Consentry for pages using the script-tag build consentry.js.
import './types/iife';
export type * from './types/index';
