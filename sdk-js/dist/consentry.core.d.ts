export * from './types/headless';
