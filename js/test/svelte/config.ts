export const configFetches = {
  count: 0,
  fetch: async (): Promise<string> => {
    configFetches.count++;
    return "x";
  },
};
